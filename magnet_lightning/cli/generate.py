"""The generation command line (`magnet-generate`, `python -m magnet_lightning.generate`).

    python -m magnet_lightning.generate --ckpt model.ckpt --text "calm piano" --duration 10 --out samples/
    python -m magnet_lightning.generate --ckpt state_dict.bin --prompts captions.txt --out samples/ --batch-size 8
    python -m magnet_lightning.generate --ckpt model.ckpt --text "add drums" --prompt-audio clip.wav --infill 2 4 \
        --out edited/

`--prompt-audio` alone continues the clip (its tokens are kept, the rest generated up to --duration); with
`--infill START END` the clip is edited: only the frames in [START, END) seconds are regenerated (MAGNeT only).

The model family is the checkpoint's: MAGNeT checkpoints decode iteratively (decoding.py, options DecodingConfig),
autoregressive MusicGen ones token by token with a KV cache (ar_decoding.py, options ARDecodingConfig: --greedy,
--temperature, --top-k, --top-p, --cfg-coef).
WAV files are loudness-normalised to -14 LUFS and written as 32-bit float (no clipping).

Shapes: B batch, K codebooks, T frames, C channels, N samples.
"""

from __future__ import annotations

import argparse
import logging
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from magnet_lightning.checkpoint.hub import expand_args
from magnet_lightning.cli.checks import check_generate_args, peek_checkpoint
from magnet_lightning.cli.help import DefaultsOnce, OneLineParser, program_name
from magnet_lightning.cli.melody import add_melody_options, generate_melody
from magnet_lightning.data.prompts import read_prompts
from magnet_lightning.errors import CheckpointError, pop_debug_flag, user_errors
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.hybrid_magnet import DEFAULT_PROMPT_SECONDS
from magnet_lightning.generation.magnet_config import DECODING_PRESETS
from magnet_lightning.generation.two_model import hybrid_generate
from magnet_lightning.utils.audio import write_wav
from magnet_lightning.utils.provenance import absolute_if_local, describe_random
from magnet_lightning.utils.run_manifest import RunManifest

log = logging.getLogger(__name__)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "untitled"


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    """The decoding options (which of them a checkpoint takes is its family's entry in generation/families.py)."""
    p.add_argument("--preset", choices=sorted(DECODING_PRESETS), default=None,
                   help="decoding defaults (default: the checkpoint's, else music)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="decoding steps per codebook, e.g. 20 10 10 10")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the preset's)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the K most likely tokens (default: off)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: the preset's)")
    p.add_argument("--cfg-max", type=float, default=None, help="guidance coefficient at the first step")
    p.add_argument("--cfg-min", type=float, default=None, help="guidance coefficient at the last step")
    p.add_argument("--cfg-coef", type=float, default=None,
                   help="guidance coefficient of the autoregressive family (default: the checkpoint's, 3.0)")
    p.add_argument("--span-arrangement", choices=["nonoverlap", "stride1"], default=None,
                   help="how masked spans are laid out (default: the checkpoint's)")
    p.add_argument("--span-scoring", choices=["max", "prod"], default=None,
                   help="a span's confidence from its tokens' probabilities (default: the preset's)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=program_name("magnet_lightning.generate"), description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsOnce)
    p.add_argument("--ckpt", required=True,
                   help="our .ckpt, an export folder, an audiocraft state_dict.bin or a released repo id")
    p.add_argument("--adapter", default=None, help="LoRA adapter folder or LoRA run .ckpt trained on --ckpt")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", action="append", help="caption (repeat for several)")
    src.add_argument("--prompts", help="file of captions: .txt (one a line), .csv or .jsonl (text/caption[, name])")
    src.add_argument("--unconditional", type=int, metavar="N", help="N generations without text")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds (default: the training segment); longer runs in windows of the segment")
    p.add_argument("--extend-stride", type=float, default=None, metavar="SECONDS",
                   help="long-form generation: seconds each window advances (it continues the last segment - stride "
                        "seconds of the one before); default: the family's (18 s for a 30-s MusicGen, as audiocraft)")
    p.add_argument("--num-samples", type=int, default=1, help="generations per caption")
    p.add_argument("--batch-size", type=int, default=8, help="generations decoded together")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the first batch, batch i uses seed + i (default: drawn, recorded in manifest.jsonl)")
    _add_decoding_options(p)
    p.add_argument("--greedy", action="store_true", help="argmax instead of sampling")
    p.add_argument("--prompt-audio", help="audio to continue, or with --infill the clip to edit")
    p.add_argument("--infill", type=float, nargs=2, metavar=("START", "END"),
                   help="regenerate [START, END) seconds of --prompt-audio")
    p.add_argument("--lufs", type=float, default=-14.0, help="loudness of written files")
    p.add_argument("--no-normalize", action="store_true", help="write audio without loudness normalisation")
    p.add_argument("--save-tokens", action="store_true", help="also write NAME.codes.npy [K, T] int16")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--text-encoder", default=None, help="override the checkpoint's T5 (name or path)")
    p.add_argument("--codec", default=None, help="override the checkpoint's codec (name or path)")
    p.add_argument("--allow-random-text-encoder", action="store_true",
                   help="a random-weight T5 stand-in when its weights are missing (what a checkpoint trained with "
                        "the stand-in needs; the audio will not follow the text)")
    p.add_argument("--rescorer", default=None, metavar="CKPT",
                   help="an autoregressive checkpoint (e.g. facebook/musicgen-small) that rescores MAGNeT's spans "
                        "(paper Eq. 5); needs --rescore-weight")
    p.add_argument("--rescore-weight", type=float, default=None, metavar="W",
                   help="weight of MAGNeT's own probability, 0 <= W < 1 (1 - W goes to the rescorer)")
    p.add_argument("--hybrid-ar", default=None, metavar="CKPT",
                   help="hybrid inference: this autoregressive checkpoint generates the first "
                        "--hybrid-prompt-seconds, MAGNeT the rest")
    p.add_argument("--hybrid-prompt-seconds", type=float, default=None, metavar="S",
                   help=f"seconds generated autoregressively first: by --hybrid-ar, or by a Hybrid-MAGNeT --ckpt "
                        f"(default: the checkpoint's, else {DEFAULT_PROMPT_SECONDS:g})")
    p.add_argument("--no-fast", action="store_true", help="plain decoding loop (no static buffers / CUDA graphs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the per-step forward (CUDA)")
    add_melody_options(p)
    p.epilog = "A wrong argument is one line and exit code 2; --debug (or MAGNET_DEBUG=1) shows the traceback."
    return p


def _jobs(args) -> list[tuple[str, str | None]]:
    if args.prompts:
        prompts = read_prompts(args.prompts)
    elif args.text:
        prompts = [(f"{i:04d}_{_slug(t)}", t) for i, t in enumerate(args.text)]
    else:
        prompts = [(f"{i:04d}_uncond", None) for i in range(args.unconditional or 1)]
    if args.num_samples > 1:
        prompts = [(f"{name}_s{j}", text) for name, text in prompts for j in range(args.num_samples)]
    return prompts


def _partners(args, gen: MagnetGenerator) -> dict[str, MagnetGenerator]:
    """The second models of --rescorer and --hybrid-ar (no codec: they only handle tokens; the T5 is shared when it is
    the same one)."""
    partners = {}
    for key in ("rescorer", "hybrid_ar"):
        ckpt = getattr(args, key)
        if ckpt:
            same_t5 = gen.text_encoder is not None and gen.text_encoder.serves(peek_checkpoint(ckpt).text_encoder)
            partners[key] = MagnetGenerator.from_pretrained(
                ckpt, device=gen.device, codec=False, text_encoder=gen.text_encoder if same_t5 else None,
                allow_random_text_encoder=args.allow_random_text_encoder)
    return partners


def run_provenance(args, gen: MagnetGenerator) -> dict:
    """What each manifest record says about its inputs: absolute checkpoint and prompt-audio paths, the infill range,
    the seed (drawn and recorded when --seed is not given), and which parts had random weights."""
    parts = (["codec"] if getattr(gen.codec, "random_weights", False) else []) + \
        (["text_encoder"] if getattr(gen.text_encoder, "is_random", False) else [])
    return {"ckpt": absolute_if_local(str(args.ckpt)),
            "prompt_audio": absolute_if_local(args.prompt_audio), "infill": list(args.infill) if args.infill else None,
            "melody": absolute_if_local(args.melody),
            "seed": args.seed if args.seed is not None else secrets.randbelow(2**31),
            "random_parts": parts, "random_weights": describe_random(parts)}


def _manifest_record(args, name: str, text: str | None, tokens, wav, sample_rate: int, seed, config,
                     provenance: dict) -> dict:
    return {"file": f"{name}.wav", "text": text, "seconds": wav.shape[-1] / sample_rate, "frames": tokens.shape[-1],
            "decoding": asdict(config), "rescorer": args.rescorer, "hybrid_ar": args.hybrid_ar, **provenance,
            "seed": seed}


def _generate_batch(args, gen: MagnetGenerator, partners: dict, texts: list, checked, config, seed, progress):
    """One batch through the generator, or through two-model hybrid inference with --hybrid-ar."""
    kwargs = dict(duration=args.duration, decoding=config, seed=seed, rescorer=partners.get("rescorer"),
                  extend_stride=args.extend_stride, progress=progress)
    if "hybrid_ar" in partners:
        return hybrid_generate(gen, partners["hybrid_ar"], texts,
                               prompt_seconds=args.hybrid_prompt_seconds or DEFAULT_PROMPT_SECONDS, **kwargs)
    return gen.generate(texts, prompt=checked.prompt, prompt_sample_rate=checked.prompt_rate,
                        infill=tuple(args.infill) if args.infill else None, **checked.melody, **kwargs)


def _run(args, checked) -> None:
    """Load the checkpoint (and its partners), then generate every batch into --out with its manifest."""
    gen = MagnetGenerator.from_pretrained(
        args.ckpt, device=args.device, text_encoder=args.text_encoder, codec=args.codec,
        allow_random_text_encoder=args.allow_random_text_encoder, fast=False if args.no_fast else None,
        compile=args.compile, adapter=args.adapter, stems_model=args.stems_model)
    partners = _partners(args, gen)
    config = gen.decoding_config(args.duration, args.preset, **checked.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = RunManifest(out / "manifest.jsonl")
    batches = [checked.jobs[i:i + args.batch_size] for i in range(0, len(checked.jobs), args.batch_size)]
    steps = gen.num_steps(config, args.duration, args.extend_stride)
    if "hybrid_ar" in partners:
        ar = partners["hybrid_ar"]
        steps += ar.num_steps(ar.decoding_config(), args.hybrid_prompt_seconds or DEFAULT_PROMPT_SECONDS)
    bar = tqdm(total=len(batches) * steps, unit="step", desc="generating")
    provenance = run_provenance(args, gen)
    for index, batch in enumerate(batches):
        start = bar.n
        seed = provenance["seed"] + index
        result = _generate_batch(args, gen, partners, [text for _, text in batch], checked, config, seed,
                                 lambda done, _total, start=start: bar.update(start + done - bar.n))
        records = []
        for (name, text), tokens, wav in zip(batch, result.tokens, result.audio):
            write_wav(out / f"{name}.wav", wav, result.sample_rate, None if args.no_normalize else args.lufs)
            if args.save_tokens:
                np.save(out / f"{name}.codes.npy", tokens.cpu().numpy().astype(np.int16))
            records.append(_manifest_record(args, name, text, tokens, wav, result.sample_rate, seed, config,
                                           provenance))
        manifest.add(records)
    bar.close()
    log.info("wrote %d files to %s", len(checked.jobs), out)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: every argument is checked (with the checkpoint's family, K and segment read cheaply) before the model,
    the T5 and the codec are loaded; a mistake is one line on stderr and exit code 2, and nothing is written."""
    args = build_parser().parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    expand_args(args, "out", "prompts", "prompt_audio", "ckpt", "rescorer", "hybrid_ar", "codec", "text_encoder",
                "adapter", "melody", "stems_model")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with user_errors(CheckpointError):
        if args.adapter and not Path(args.adapter).exists():
            raise FileNotFoundError(f"--adapter {args.adapter} not found (a LoRA adapter folder or a LoRA run's .ckpt)")
        checked = check_generate_args(args, _jobs)
        checked.melody = generate_melody(args, peek_checkpoint)  # --melody, checked before any loading
        _run(args, checked)
    return 0
