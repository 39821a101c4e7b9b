"""The generation command line (`magnet-generate`, `python -m magnet_lightning.generate`).

    python -m magnet_lightning.generate --ckpt model.ckpt --text "calm piano" --duration 10 --out samples/
    python -m magnet_lightning.generate --ckpt state_dict.bin --prompts captions.txt --out samples/ --batch-size 8
    python -m magnet_lightning.generate --ckpt model.ckpt --text "add drums" --prompt-audio clip.wav --infill 2 4 \
        --out edited/

`--prompt-audio` alone continues the clip (its tokens are kept, the rest generated up to --duration); with
`--infill START END` the clip is edited: only the frames in [START, END) seconds are regenerated (MAGNeT only).

The model family is the checkpoint's, and so are the decoding options it takes: each flag of the "decoding options"
group is declared once, in its family's decoding config (generation/options.py), and a flag the checkpoint's family
does not take is one line naming the family. Every argument is checked by building the generation plan
(generation/plan.py) before anything is loaded; --dry-run prints it.
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
from magnet_lightning.cli.melody import add_melody_options
from magnet_lightning.cli.options import add_generation_flags
from magnet_lightning.data.prompts import read_prompts
from magnet_lightning.errors import CheckpointError, pop_debug_flag, user_errors
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.generation.two_model import two_model_generate
from magnet_lightning.utils.audio import write_wav
from magnet_lightning.utils.provenance import absolute_if_local, describe_random
from magnet_lightning.utils.run_manifest import RunManifest

log = logging.getLogger(__name__)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:limit] or "untitled"


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
    p.add_argument("--num-samples", type=int, default=1, help="generations per caption")
    p.add_argument("--batch-size", type=int, default=8, help="generations decoded together")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the first batch, batch i uses seed + i (default: drawn, recorded in manifest.jsonl)")
    p.add_argument("--prompt-audio", help="audio to continue, or with --infill the clip to edit")
    p.add_argument("--infill", type=float, nargs=2, metavar=("START", "END"),
                   help="regenerate [START, END) seconds of --prompt-audio")
    p.add_argument("--rescorer", default=None, metavar="CKPT",
                   help="an autoregressive checkpoint (e.g. facebook/musicgen-small) that rescores MAGNeT's spans "
                        "(paper Eq. 5); needs --rescore-weight")
    p.add_argument("--hybrid-ar", default=None, metavar="CKPT",
                   help="two-model generation: this autoregressive checkpoint generates the first "
                        "--hybrid-prompt-seconds, MAGNeT the rest")
    add_generation_flags(p)
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the generation plan (windows, steps, options), load nothing")
    p.add_argument("--lufs", type=float, default=-14.0, help="loudness of written files")
    p.add_argument("--no-normalize", action="store_true", help="write audio without loudness normalisation")
    p.add_argument("--save-tokens", action="store_true", help="also write NAME.codes.npy [K, T] int16")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--text-encoder", default=None, help="override the checkpoint's T5 (name or path)")
    p.add_argument("--codec", default=None, help="override the checkpoint's codec (name or path)")
    p.add_argument("--allow-random-text-encoder", action="store_true",
                   help="a random-weight T5 stand-in when its weights are missing (what a checkpoint trained with "
                        "the stand-in needs; the audio will not follow the text)")
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
    """What each manifest record says about its inputs: absolute checkpoint, adapter and prompt-audio paths, the
    infill range, the seed (drawn and recorded when --seed is not given), and which parts had random weights."""
    parts = (["codec"] if getattr(gen.codec, "random_weights", False) else []) + \
        (["text_encoder"] if getattr(gen.text_encoder, "is_random", False) else [])
    return {"ckpt": absolute_if_local(str(args.ckpt)), "adapter": absolute_if_local(args.adapter),
            "prompt_audio": absolute_if_local(args.prompt_audio), "infill": list(args.infill) if args.infill else None,
            "melody": absolute_if_local(args.melody),
            "seed": args.seed if args.seed is not None else secrets.randbelow(2**31),
            "random_parts": parts, "random_weights": describe_random(parts)}


def _manifest_record(args, name: str, text: str | None, tokens, wav, sample_rate: int, seed, plan,
                     provenance: dict) -> dict:
    return {"file": f"{name}.wav", "text": text, "seconds": wav.shape[-1] / sample_rate, "frames": tokens.shape[-1],
            "decoding": asdict(plan.config), "rescorer": args.rescorer, "hybrid_ar": args.hybrid_ar,
            "long_form": None if plan.window_frames is None else {
                "windows": len(plan.windows), "window_seconds": plan.window_frames / plan.facts.frame_rate,
                "stride_seconds": plan.stride_frames / plan.facts.frame_rate},
            **provenance, "seed": seed}


def _generate_batch(gen: MagnetGenerator, partners: dict, texts: list, checked, seed, progress):
    """One batch of the plan through the generator, or through two-model generation with --hybrid-ar."""
    kwargs = dict(plan=checked.plan, seed=seed, rescorer=partners.get("rescorer"), progress=progress)
    if "hybrid_ar" in partners:
        return two_model_generate(gen, partners["hybrid_ar"], texts, **kwargs)
    return gen.generate(texts, prompt=checked.prompt, prompt_sample_rate=checked.prompt_rate, **checked.melody,
                        **kwargs)


def _run(args, checked) -> None:
    """Load the checkpoint (and its partners), then generate every batch of the plan into --out with its
    manifest."""
    gen = MagnetGenerator.from_pretrained(
        args.ckpt, device=args.device, text_encoder=args.text_encoder, codec=args.codec,
        allow_random_text_encoder=args.allow_random_text_encoder, fast=False if args.no_fast else None,
        compile=args.compile, adapter=args.adapter, stems_model=args.stems_model)
    partners = _partners(args, gen)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = RunManifest(out / "manifest.jsonl")
    batches = [checked.jobs[i:i + args.batch_size] for i in range(0, len(checked.jobs), args.batch_size)]
    bar = tqdm(total=len(batches) * checked.plan.steps, unit="step", desc="generating")
    provenance = run_provenance(args, gen)
    for index, batch in enumerate(batches):
        start = bar.n
        seed = provenance["seed"] + index
        result = _generate_batch(gen, partners, [text for _, text in batch], checked, seed,
                                 lambda done, _total, start=start: bar.update(start + done - bar.n))
        records = []
        for (name, text), tokens, wav in zip(batch, result.tokens, result.audio):
            write_wav(out / f"{name}.wav", wav, result.sample_rate, None if args.no_normalize else args.lufs)
            if args.save_tokens:
                np.save(out / f"{name}.codes.npy", tokens.cpu().numpy().astype(np.int16))
            records.append(_manifest_record(args, name, text, tokens, wav, result.sample_rate, seed, checked.plan,
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
        if args.dry_run:
            print(checked.plan.describe())
            print(f"{len(checked.jobs)} generation(s) in batches of {args.batch_size}; nothing loaded (--dry-run)")
            return 0
        _run(args, checked)
    return 0
