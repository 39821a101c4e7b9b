"""Checks the command-line entry points run on their arguments before loading a model.

`peek_checkpoint` (checkpoint/facts.py) reads what a checkpoint says about itself without building anything;
`plan_of` builds the generation plan of the flags (generation/plan.py), where every generation option and input is
checked once; the other functions turn a wrong argument (a number, a file, the T5 on disk) into a one-line
`UserError` naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile

from magnet_lightning.checkpoint.facts import CheckpointFacts, peek_checkpoint
from magnet_lightning.cli.melody import generate_melody, with_adapter_melody
from magnet_lightning.cli.options import given_options, user_error
from magnet_lightning.cli.startup import text_encoder_on_disk
from magnet_lightning.errors import UserError, one_line
from magnet_lightning.generation.options import OptionError
from magnet_lightning.generation.plan import GenerationPlan, make_plan
from magnet_lightning.generation.request import GenerationRequest
from magnet_lightning.utils.audio import read_audio
from magnet_lightning.utils.provenance import looks_local

__all__ = ["CheckpointFacts", "peek_checkpoint"]  # read here by the entry points (checkpoint/facts.py)


def positive(flag: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UserError(f"{flag} must be a positive number, got {value}")


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


@dataclass
class GenerateInputs:
    """What `python -m magnet_lightning.generate` needs once its arguments are known to be right."""

    jobs: list[tuple[str, str | None]]
    overrides: dict[str, Any]
    """The decoding options the flags set."""
    plan: GenerationPlan
    prompt: Any = None
    prompt_rate: int | None = None
    partners: dict[str, CheckpointFacts] = field(default_factory=dict)
    """--rescorer / --hybrid-ar: their checkpoints' facts."""
    melody: dict[str, Any] = field(default_factory=dict)
    """--melody: the generator's melody keywords (the clip and its sample rate)."""


def clip_frames(facts: CheckpointFacts, path: str, flag: str = "--prompt-audio") -> int:
    """Frames the checkpoint's codec gives for the audio file at `path` (its header only)."""
    audio_seconds(path, flag)
    info = soundfile.info(str(path))
    return facts.audio_frames(info.frames, info.samplerate)


def plan_of(facts: CheckpointFacts, args: argparse.Namespace, partners: dict[str, CheckpointFacts],
            duration: float | None = None) -> GenerationPlan:
    """The generation plan of the generate (or evaluate) flags: every option and input checked once, there; a
    mistake is one line naming the flags."""
    frames, unreadable = 0, None
    if getattr(args, "prompt_audio", None):
        try:
            frames = clip_frames(facts, args.prompt_audio)
        except (FileNotFoundError, UserError) as err:  # said after what the family does not take (a clearer fix)
            frames, unreadable = 1, err
    infill = tuple(args.infill) if getattr(args, "infill", None) else None
    try:
        request = GenerationRequest(
            duration if duration is not None else args.duration, getattr(args, "extend_stride", None),
            getattr(args, "preset", None), given_options(args), 0 if infill else frames, infill,
            frames if infill else None, partners.get("rescorer"), partners.get("hybrid_ar"),
            bool(getattr(args, "melody", None)))
        plan = make_plan(facts, request)
    except OptionError as err:
        raise (user_error(err) if unreadable is None or err.option != "prompt" else unreadable) from None
    if unreadable is not None:
        raise unreadable
    return plan


def check_generate_args(args: argparse.Namespace, make_jobs: Callable[[argparse.Namespace], list]) -> GenerateInputs:
    """Every check of the generate CLI that needs no model: numbers, the output folder, the T5 on disk, the plan
    (what the checkpoint's family takes, its options, the partners, the prompt and infill against the lengths),
    the prompt file (its line on error)."""
    if getattr(args, "infill", None) and not args.prompt_audio:
        raise UserError("--infill needs --prompt-audio (the clip to edit)")
    for flag, value in (("--batch-size", args.batch_size), ("--num-samples", args.num_samples),
                        ("--unconditional", args.unconditional)):
        positive(flag, value)
    output_folder(args.out)
    facts = with_adapter_melody(peek_checkpoint(args.ckpt), getattr(args, "adapter", None))
    partners = {key: peek_checkpoint(getattr(args, key)) for key in ("rescorer", "hybrid_ar")
                if getattr(args, key, None)}
    plan = plan_of(facts, args, partners)
    check_text_encoder(facts, getattr(args, "text_encoder", None), getattr(args, "allow_random_text_encoder", False))
    try:
        jobs = make_jobs(args)
    except ValueError as err:  # a malformed prompt file: the message names the file and line
        raise UserError(f"--prompts: {err}") from None
    if not jobs:
        raise UserError(f"--prompts {args.prompts} holds no prompt")
    inputs = GenerateInputs(jobs, given_options(args), plan, partners=partners, melody=generate_melody(args, facts))
    if args.prompt_audio:
        try:
            inputs.prompt, inputs.prompt_rate = read_audio(args.prompt_audio)
        except ValueError as err:
            raise UserError(f"--prompt-audio: {err}") from None
    return inputs
