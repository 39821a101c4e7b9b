"""Checks the command-line entry points run on their arguments before loading a model.

`peek_checkpoint` reads what a checkpoint says about itself (K, V, the training segment, codec and text encoder
names) without building the model, the T5 or the codec; the other functions turn a wrong argument into a one-line
`UserError` naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile
import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import audiocraft_metadata
from magnet_lightning.checkpoint.audiocraft_config import ConfigError, read_lm_config
from magnet_lightning.checkpoint.pretrained import (
    CONFIG_NAME,
    export_codec,
    is_export,
    lightning_metadata,
    recorded_random_parts,
)
from magnet_lightning.cli.startup import text_encoder_on_disk
from magnet_lightning.errors import UserError, one_line
from magnet_lightning.generation.families import decoder_family, decoding_config_for, families_where, family_label
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.models.registry import DEFAULT_FAMILY
from magnet_lightning.utils.audio import read_audio
from magnet_lightning.utils.provenance import looks_local


@dataclass(frozen=True)
class CheckpointFacts:
    family: str
    num_codebooks: int
    codebook_size: int
    segment_duration: float
    codec: str
    text_encoder: str
    span_len: int = 3
    decoding: dict | None = None
    path: str = ""
    """The checkpoint as the user named it (for messages)."""
    frame_rate: float = 50.0
    random_parts: tuple[str, ...] = ()
    """Parts recorded as random-weight stand-ins ('codec', 'text_encoder')."""
    melody: dict | None = None
    """A melody-conditioned checkpoint's chroma settings (config.MelodyConfig fields), None for a text-only one."""


def _load_light(path: Path) -> object:
    """torch.load as data only, memory-mapped when the file format allows it (tensors are not read)."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise UserError(f"{path} is not a readable torch checkpoint (it is only ever read as data): "
                        f"{one_line(err)[:300]}") from None


def peek_checkpoint(path: str | Path) -> CheckpointFacts:
    """Facts of our Lightning checkpoint, an audiocraft state_dict.bin or a released repo id, read without building
    any model (an audiocraft file's facts come from its xp.cfg; its tensors are memory-mapped, not read)."""
    folder = hub.expand(path)
    if is_export(folder):  # an export folder: its config.json says everything
        folder = folder if folder.is_dir() else folder.parent
        config = json.loads((folder / CONFIG_NAME).read_text())
        model = config.get("model") or {}
        codec = export_codec(folder, config)
        return CheckpointFacts(config.get("family", DEFAULT_FAMILY), int(model.get("num_codebooks", 4)),
                               int(model.get("codebook_size", 2048)), float(config.get("segment_duration", 10.0)),
                               codec, str(config.get("text_encoder")), int(config.get("span_len", 3)),
                               dict(config.get("decoding") or {}), str(path), float(config.get("frame_rate", 50.0)),
                               tuple(recorded_random_parts(config, codec)), config.get("melody"))
    source = hub.resolve_lm(path)
    raw = _load_light(source.path)
    if isinstance(raw, dict) and "best_state" in raw:
        try:
            spec = read_lm_config(raw.get("xp.cfg"))
        except ConfigError as err:
            raise UserError(f"{source.path}: {err}") from None
        meta = {**audiocraft_metadata(spec, source), "num_codebooks": spec.model.num_codebooks,
                "codebook_size": spec.model.codebook_size}
    else:
        hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
        if not isinstance((hp or {}).get("model"), dict) or "num_codebooks" not in hp["model"]:
            raise UserError(f"{source.path}: neither a magnet_lightning checkpoint (hyper_parameters.model) nor an "
                            "audiocraft state_dict.bin (best_state + xp.cfg)")
        meta = lightning_metadata(hp)
        meta["random_parts"] = recorded_random_parts(raw, meta["codec"])
    return CheckpointFacts(meta["family"], meta["num_codebooks"], meta["codebook_size"],
                           float(meta["segment_duration"]), str(meta["codec"]), str(meta["text_encoder"]),
                           int(meta["span_len"]), dict(meta["decoding"]), str(path),
                           float(meta["frame_rate"]), tuple(meta.get("random_parts") or ()), meta.get("melody"))


def positive(flag: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UserError(f"{flag} must be a positive number, got {value}")


def check_steps(steps: Sequence[int] | None, num_codebooks: int, flag: str = "--steps") -> None:
    if steps is None:
        return
    if any(s < 1 for s in steps):
        raise UserError(f"{flag} {' '.join(map(str, steps))}: every entry must be >= 1")
    if len(steps) != num_codebooks:
        raise UserError(f"{flag} has {len(steps)} entries ({' '.join(map(str, steps))}) but the checkpoint has "
                        f"{num_codebooks} codebooks: give one number of decoding steps per codebook, e.g. "
                        f"{flag} {' '.join(['20'] + ['10'] * (num_codebooks - 1))}")


_OPTION_FLAGS = {  # decoding option -> the generate command line's flag
    "decoding_steps": "--steps", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
    "max_cfg_coef": "--cfg-max", "min_cfg_coef": "--cfg-min", "span_arrangement": "--span-arrangement",
    "span_scoring": "--span-scoring", "use_sampling": "--greedy", "cfg_coef": "--cfg-coef",
    "rescore_weight": "--rescore-weight", "prompt_seconds": "--hybrid-prompt-seconds",
}


def decoding_overrides(args: argparse.Namespace, own_prompt: bool) -> dict[str, Any]:
    """The decoding options the generate flags set (None: not given). --hybrid-prompt-seconds is the prompt length
    of a family that generates its own prompt, else the two-model hybrid's (not a decoding option)."""
    return {
        "decoding_steps": args.steps, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
        "max_cfg_coef": args.cfg_max, "min_cfg_coef": args.cfg_min, "span_arrangement": args.span_arrangement,
        "span_scoring": args.span_scoring, "use_sampling": False if args.greedy else None, "cfg_coef": args.cfg_coef,
        "rescore_weight": getattr(args, "rescore_weight", None),
        "prompt_seconds": getattr(args, "hybrid_prompt_seconds", None) if own_prompt else None,
    }


def check_options(facts: CheckpointFacts, preset: str | None, overrides: dict) -> None:
    """Flags of options the checkpoint's family does not take, named with the family; --steps against its K."""
    spec, label = decoder_family(facts.family), family_label(facts.family)
    given = sorted(k for k, v in overrides.items() if v is not None)
    wrong = [_OPTION_FLAGS.get(k, k) for k in given if k not in spec.options] + (
        ["--preset"] if preset and not spec.presets else [])
    if wrong:
        takes = sorted(_OPTION_FLAGS[k] for k in spec.options if k in _OPTION_FLAGS)
        raise UserError(f"{', '.join(wrong)}: not an option of the {label} family of {facts.path} (it takes "
                        f"{', '.join(takes + (['--preset'] if spec.presets else []))})")
    if spec.presets:
        check_steps(overrides.get("decoding_steps"), facts.num_codebooks)


def check_decoding(facts: CheckpointFacts, duration: float, preset: str | None, overrides: dict) -> None:
    """The decoding options as the generator will build them for this checkpoint: options its family does not take
    (check_options), ranges of temperature, top-p, ..."""
    check_options(facts, preset, overrides)
    spec = decoder_family(facts.family)
    try:
        config = decoding_config_for(facts.family, facts.decoding or {}, span_len=facts.span_len,
                                     segment_duration=facts.segment_duration, num_codebooks=facts.num_codebooks,
                                     duration=duration, preset=preset, overrides=overrides)
        if spec.presets:
            config.check(facts.num_codebooks)
    except (ValueError, TypeError) as err:
        raise UserError(f"decoding options: {err}") from None


def check_family_takes(args: argparse.Namespace, facts: CheckpointFacts) -> None:
    """--prompt-audio, --infill, --rescorer and --hybrid-ar against the checkpoint family's table entry."""
    spec, label = decoder_family(facts.family), family_label(facts.family)
    if args.infill and not spec.infill:
        raise UserError(f"--infill: {facts.path} is a {label} checkpoint, which does not infill (infilling needs a "
                        f"{' or '.join(families_where(infill=True))} checkpoint)")
    if args.prompt_audio and not args.infill and not spec.prompt:
        raise UserError(f"--prompt-audio: {facts.path} is a {label} checkpoint, which does not continue a prompt")
    for flag in ("--rescorer", "--hybrid-ar"):
        if getattr(args, flag[2:].replace("-", "_"), None) and not spec.rescored:
            raise UserError(f"{flag}: {facts.path} is a {label} checkpoint; {flag} works with a "
                            f"{' or '.join(families_where(rescored=True))} --ckpt")
    seconds = getattr(args, "hybrid_prompt_seconds", None)
    if seconds is not None and not spec.own_prompt and not getattr(args, "hybrid_ar", None):
        raise UserError("--hybrid-prompt-seconds needs --hybrid-ar CKPT (two-model hybrid inference) or a "
                        f"{' or '.join(families_where(own_prompt=True))} --ckpt")


def audio_seconds(path: str | Path, flag: str) -> float:
    """Length of an audio file in seconds (header only); UserError naming `flag` if it cannot be read."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag}: audio file {path} not found")
    try:
        info = soundfile.info(str(path))
    except Exception as err:  # soundfile raises several types for corrupt or unsupported files
        raise UserError(f"{flag}: cannot read audio file {path}: {one_line(err)}") from None
    if info.frames == 0:
        raise UserError(f"{flag}: audio file {path} is empty")
    return info.frames / info.samplerate


def output_folder(path: str | Path, flag: str = "--out") -> None:
    if Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{flag} {path} exists and is not a folder")


def output_file(path: str | Path, flag: str = "--out") -> None:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: give the file to write")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is not a folder")


@dataclass
class GenerateInputs:
    """What `python -m magnet_lightning.generate` needs once its arguments are known to be right."""

    jobs: list[tuple[str, str | None]]
    overrides: dict[str, Any]
    prompt: Any = None
    prompt_rate: int | None = None


def check_generate_args(args: argparse.Namespace, make_jobs: Callable[[argparse.Namespace], list]) -> GenerateInputs:
    """Every check of the generate CLI that needs no model: numbers, the output folder, what the checkpoint's family
    takes (options, --steps against its K, prompt, infill, partners), the prompt file (its line on error),
    --prompt-audio against --duration."""
    if args.infill and not args.prompt_audio:
        raise UserError("--infill needs --prompt-audio (the clip to edit)")
    for flag, value in (("--duration", args.duration), ("--batch-size", args.batch_size),
                        ("--num-samples", args.num_samples), ("--unconditional", args.unconditional),
                        ("--hybrid-prompt-seconds", getattr(args, "hybrid_prompt_seconds", None))):
        positive(flag, value)
    output_folder(args.out)
    facts = peek_checkpoint(args.ckpt)
    duration = args.duration or facts.segment_duration
    check_family_takes(args, facts)
    overrides = decoding_overrides(args, decoder_family(facts.family).own_prompt)
    check_options(facts, args.preset, overrides)
    check_partners(args, facts, duration)
    check_text_encoder(facts, getattr(args, "text_encoder", None), getattr(args, "allow_random_text_encoder", False))
    check_long_form(args, facts, duration)
    check_decoding(facts, min(duration, facts.segment_duration), args.preset, overrides)  # the steps of a window
    try:
        jobs = make_jobs(args)
    except ValueError as err:  # a malformed prompt file: the message names the file and line
        raise UserError(f"--prompts: {err}") from None
    if not jobs:
        raise UserError(f"--prompts {args.prompts} holds no prompt")
    inputs = GenerateInputs(jobs, overrides)
    if args.prompt_audio:
        # a family that generates its own prompt keeps a given one in every delay-shifted stream (K - 1 more frames)
        margin = (facts.num_codebooks - 1) / facts.frame_rate if decoder_family(facts.family).own_prompt else 0.0
        check_prompt_audio(args.prompt_audio, duration, args.infill, margin)
        try:
            inputs.prompt, inputs.prompt_rate = read_audio(args.prompt_audio)
        except ValueError as err:
            raise UserError(f"--prompt-audio: {err}") from None
    return inputs


def check_text_encoder(facts: CheckpointFacts, override: str | None, allow_random: bool) -> None:
    """The T5 the checkpoint names (or `override`) is on disk, or --allow-random-text-encoder was given; the error
    says which, and that a checkpoint trained with the random stand-in needs that flag to get the same one."""

    name = override or facts.text_encoder
    if allow_random or text_encoder_on_disk(name):
        return
    if "text_encoder" in facts.random_parts:
        raise UserError(f"this checkpoint was trained with a random-weight stand-in of {name!r} (its weights were "
                        "missing); pass --allow-random-text-encoder to generate with the same stand-in")
    fetch = "" if looks_local(name) else f"download it (`hf download {name}`) or "
    raise UserError(f"text encoder {name!r} is not on disk: {fetch}pass its folder with --text-encoder DIR; "
                    "--allow-random-text-encoder uses a random-weight stand-in instead (the audio will not follow "
                    "the text)")


def check_partners(args: argparse.Namespace, facts: CheckpointFacts, duration: float) -> None:
    """--rescorer / --rescore-weight and --hybrid-ar / --hybrid-prompt-seconds: partners of a family that serves as
    one, with the same codec layout, a weight in [0, 1), a prompt shorter than the clip."""
    rescorer, weight, hybrid = (getattr(args, name, None) for name in ("rescorer", "rescore_weight", "hybrid_ar"))
    if rescorer and (weight is None or not 0 <= weight < 1):
        raise UserError(f"--rescorer needs --rescore-weight W with 0 <= W < 1 (the weight of the checkpoint's own "
                        f"probability), got {weight}")
    if weight is not None and weight < 1 and not rescorer:
        raise UserError("--rescore-weight below 1 needs --rescorer CKPT (an autoregressive checkpoint)")
    partners = " or ".join(families_where(partner=True))
    for flag, ckpt in (("--rescorer", rescorer), ("--hybrid-ar", hybrid)):
        if ckpt:
            other = peek_checkpoint(ckpt)
            if not decoder_family(other.family).partner or (other.num_codebooks, other.codebook_size) != (
                    facts.num_codebooks, facts.codebook_size):
                raise UserError(f"{flag} {ckpt}: needs an {partners} checkpoint with K={facts.num_codebooks}, "
                                f"V={facts.codebook_size}; it is {family_label(other.family)} with "
                                f"K={other.num_codebooks}, V={other.codebook_size}")
    if hybrid:
        if args.prompt_audio or args.infill:
            raise UserError("--hybrid-ar generates its own prompt: drop --prompt-audio / --infill")
        seconds = args.hybrid_prompt_seconds or DEFAULT_PROMPT_SECONDS
        if not 0 < seconds < duration:
            raise UserError(f"--hybrid-prompt-seconds {seconds:g} must be between 0 and the {duration:g} s generated")


def check_prompt_audio(path: str, duration: float, infill: Sequence[float] | None, margin: float = 0.0) -> None:
    """A continuation prompt must be shorter than the generation (by `margin` seconds); an infill range must start
    inside the clip."""
    seconds = audio_seconds(path, "--prompt-audio")
    if infill:
        start, end = infill
        if not 0 <= start < end or start >= seconds:
            raise UserError(f"--infill {start:g} {end:g}: need 0 <= START < END with START inside the {seconds:.2f} s "
                            "of --prompt-audio")
    elif seconds > duration - margin:
        needed = f" (this family needs {margin:g} s more)" if margin else ""
        raise UserError(f"--prompt-audio is {seconds:.2f} s, longer than the {duration:g} s to generate{needed}: pass "
                        "a longer --duration or a shorter clip")


def check_long_form(args: argparse.Namespace, facts: CheckpointFacts, duration: float) -> None:
    """Long-form generation (a --duration past the checkpoint's segment, in windows of the segment): a stride below
    the segment, a prompt (--prompt-audio, or --hybrid-prompt-seconds) shorter than one window, an infill region of
    at most one window."""
    segment, stride = facts.segment_duration, getattr(args, "extend_stride", None)
    positive("--extend-stride", stride)
    if stride is not None and stride >= segment:
        raise UserError(f"--extend-stride {stride:g}: must be shorter than the checkpoint's {segment:g}-s segment (the "
                        f"window each step of long-form generation decodes), e.g. --extend-stride {0.6 * segment:g}")
    if args.infill and args.infill[1] - args.infill[0] > segment:
        raise UserError(f"--infill {args.infill[0]:g} {args.infill[1]:g}: regenerates "
                        f"{args.infill[1] - args.infill[0]:g} s, more than the checkpoint's {segment:g}-s segment; "
                        f"infill at most {segment:g} s at a time")
    if duration <= segment or args.infill:
        return
    seconds = audio_seconds(args.prompt_audio, "--prompt-audio") if args.prompt_audio else 0.0
    if segment <= seconds < duration:  # (longer than the generation: check_prompt_audio says so)
        raise UserError(f"--prompt-audio is {seconds:.2f} s: a generation longer than the checkpoint's {segment:g}-s "
                        "segment continues a prompt shorter than the segment; trim the clip")
    hybrid_prompt = getattr(args, "hybrid_prompt_seconds", None)
    if getattr(args, "hybrid_ar", None) and hybrid_prompt is not None and hybrid_prompt >= segment:
        raise UserError(f"--hybrid-prompt-seconds {hybrid_prompt:g}: a generation longer than the checkpoint's "
                        f"{segment:g}-s segment continues a prompt shorter than the segment")
