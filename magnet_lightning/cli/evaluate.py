"""Evaluate a checkpoint on a prompt set: generate one clip per caption, then FAD / KL / CLAP -> JSON report.

    python evaluation/evaluate.py --ckpt model.ckpt --prompts musiccaps.csv --reference musiccaps_wavs/ \\
        --out report.json --batch-size 16 --seed 0
    torchrun --nproc-per-node 8 evaluation/evaluate.py --ckpt ... --prompts ... --reference ... --out report.json
    python evaluation/evaluate.py --ckpt model.ckpt --prompts val_shards/ --out report.json   # shards: own codes

--prompts: a CSV (id column id/ytid/audiocap_id/youtube_id/name, caption column caption/text), .txt/.jsonl, or
token shards (folder / manifest.json / tar spec: caption from the json). --reference: a folder of <id>.wav/.flac, or
token shards whose codes (decoded by the codec) are the references, matched by id = shard key; omitted with shard
prompts: the prompts' own codes. Protocol (evaluation/README.md): generated audio cut/padded to the reference
length, -14 LUFS; batch b of the (id-ordered) set is seeded with seed + b * batch_size, so the audio is the same on
any number of ranks. With torchrun (WORLD_SIZE > 1) each rank takes every W-th batch (gloo on CPU, nccl on GPU) and
the metric sums are reduced across ranks. Missing/unreadable references: an error, or with --skip-bad a counted,
logged skip (reported in the JSON).

Arguments, prompts, references and embedder weights are all checked before the model is loaded; a mistake is one
line and exit code 2 (``--debug`` or MAGNET_DEBUG=1 shows the traceback), and no report is written.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from magnet_lightning.checkpoint.hub import expand_args
from magnet_lightning.cli import benchmark, checks
from magnet_lightning.cli.benchmark_args import add_benchmark_arguments, paths
from magnet_lightning.cli.distributed import all_sum, init_distributed
from magnet_lightning.cli.evaluate_melody import add_melody_flag, add_to_report, chroma_metric, uses_melody
from magnet_lightning.cli.help import DefaultsOnce, OneLineParser
from magnet_lightning.cli.options import add_generation_flags, given_options
from magnet_lightning.codec.codecs import load_codec
from magnet_lightning.errors import (
    CheckpointError,
    UserError,
    pop_debug_flag,
    user_errors,
)
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.metrics.eval_set import find_reference, items_from_files, items_from_shards
from magnet_lightning.metrics.generation_eval import evaluate_items
from magnet_lightning.metrics.suite import AudioEvalSuite
from magnet_lightning.utils.provenance import describe_random
from magnet_lightning.utils.stale_files import remove_stale

log = logging.getLogger("evaluate")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsOnce)
    p.add_argument("--ckpt", default=None, help="our .ckpt, an audiocraft state_dict.bin or a released repo id")
    p.add_argument("--prompts", default=None, help="caption CSV/.txt/.jsonl, or token shards")
    p.add_argument("--reference", default=None, help="reference audio folder or token shards")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--metrics", nargs="+", default=["fad", "kl", "clap"], choices=["fad", "kl", "clap"])
    p.add_argument("--fad-embedder", default="vggish", help="vggish (paper), codec (codec latents) or clap")
    p.add_argument("--kl-embedder", default="passt")
    p.add_argument("--clap-embedder", default="clap")
    p.add_argument("--embedder-kwargs", default="{}",
                   help='JSON: embedder name -> loader arguments, e.g. {"passt": {"pretrained_length": 10}}')
    p.add_argument("--vggish-ckpt", default=None)
    p.add_argument("--passt-ckpt", default=None)
    p.add_argument("--passt-length", type=int, default=None, help="PaSST window: 20 (music, default) or 10 (audio)")
    p.add_argument("--clap-ckpt", default=None)
    p.add_argument("--clap-tokenizer", default=None, help="roberta-base tokenizer folder (default: HF cache)")
    p.add_argument("--allow-random-embedders", action="store_true",
                   help="demo only: random-weight embedders where weights are missing (numbers meaningless)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--max-duration", type=float, default=None, help="cap on generated/reference seconds")
    p.add_argument("--duration", type=float, default=None, help="seconds to generate when there is no reference")
    add_generation_flags(p, ("extend_stride", "preset"))
    p.add_argument("--lufs", type=float, default=-14.0, help="loudness of generated clips")
    p.add_argument("--skip-bad", action="store_true", help="skip (count, log) ids without readable reference audio")
    p.add_argument("--device", default=None)
    p.add_argument("--text-encoder", default=None)
    p.add_argument("--codec", default=None)
    p.add_argument("--allow-random-text-encoder", action="store_true")
    p.add_argument("--no-fast", action="store_true",
                   help="plain decoding loop (default on CUDA: static buffers + CUDA graphs, bf16 weights)")
    p.add_argument("--no-progress", action="store_true")
    add_melody_flag(p)
    add_benchmark_arguments(p)
    return p


# ---------------------------------------------------------------------------------------------- items
def is_shards(spec: str | None) -> bool:
    if spec is None:
        return False
    path = Path(spec)
    if path.is_dir():
        return (path / "manifest.json").is_file() or any(path.glob("*.tar"))
    return path.name == "manifest.json" or ".tar" in spec or "://" in spec or spec.startswith("pipe:")


def load_items(args: argparse.Namespace, num_codebooks: int, codebook_size: int) -> tuple[list, dict[str, int]]:
    """Evaluation items in a fixed order, with their reference; skipped counts by reason."""

    skipped: dict[str, int] = {}
    on_bad = "skip" if args.skip_bad else "error"
    if is_shards(args.prompts):
        items, skipped["bad_shard_samples"] = items_from_shards(args.prompts, num_codebooks, codebook_size)
        if args.reference is not None:
            for item in items:
                item.codes = None
            items, skipped["missing_reference"] = attach_references(items, args, num_codebooks, codebook_size,
                                                                    on_bad)
    else:
        ref_is_dir = args.reference is not None and not is_shards(args.reference)
        items, skipped["missing_reference"] = items_from_files(args.prompts, args.reference if ref_is_dir else None,
                                                               on_bad)
        if args.reference is not None and not ref_is_dir:
            items, skipped["missing_reference"] = attach_references(items, args, num_codebooks, codebook_size,
                                                                    on_bad)
    if args.limit is not None:
        items = items[: args.limit]
    return items, skipped


def attach_references(items: list, args: argparse.Namespace, num_codebooks: int, codebook_size: int,
                      on_bad: str) -> tuple[list, int]:
    """Give each item its reference from --reference (audio folder by id, or shard codes by key)."""

    if is_shards(args.reference):
        refs, _ = items_from_shards(args.reference, num_codebooks, codebook_size)
        codes = {r.key: r.codes for r in refs}
        for item in items:
            item.codes = codes.get(item.key)
    else:
        for item in items:
            item.path = find_reference(Path(args.reference), item.key)
    missing = [i.key for i in items if i.codes is None and i.path is None]
    if missing:
        message = f"{len(missing)} of {len(items)} ids have no reference in {args.reference}, e.g. {missing[:5]}"
        if on_bad == "error":
            raise FileNotFoundError(message + " (--skip-bad skips them)")
        log.warning("Skipping: %s", message)
    return [i for i in items if i.codes is not None or i.path is not None], len(missing)


def check_readable(items: list, skip_bad: bool) -> tuple[list, int]:
    """Drop (or refuse) reference files soundfile cannot open, before any generation."""
    import soundfile

    good, bad = [], []
    for item in items:
        if item.path is None:
            good.append(item)
            continue
        try:
            info = soundfile.info(str(item.path))
            if info.frames == 0:
                raise ValueError("no samples")
            good.append(item)
        except Exception as err:  # noqa: BLE001 - every failure means "unreadable"
            bad.append(f"{item.path} ({err})")
    if bad:
        message = f"{len(bad)} unreadable reference files, e.g. {bad[:3]}"
        if not skip_bad:
            raise UserError(message + " (--skip-bad skips them)")
        log.warning("Skipping: %s", message)
    return good, len(bad)


# ---------------------------------------------------------------------------------------------- main
def embedder_kwargs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    try:
        kwargs = json.loads(args.embedder_kwargs)
    except json.JSONDecodeError as err:
        raise UserError(f"--embedder-kwargs is not valid JSON ({err})") from None
    if not isinstance(kwargs, dict) or not all(isinstance(v, dict) for v in kwargs.values()):
        raise UserError('--embedder-kwargs must map embedder names to argument objects, e.g. {"passt": {...}}')
    explicit = {"vggish": {"checkpoint": args.vggish_ckpt},
                "passt": {"checkpoint": args.passt_ckpt, "pretrained_length": args.passt_length},
                "clap": {"checkpoint": args.clap_ckpt, "tokenizer": args.clap_tokenizer}}
    for name, values in explicit.items():
        for key, value in values.items():
            if value is not None:
                kwargs.setdefault(name, {})[key] = value
    return kwargs


def decoding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding options and preset the flags set (what every generation of the evaluation passes on)."""
    return {**given_options(args), **({"preset": args.preset} if args.preset else {})}


def check_args(args: argparse.Namespace):
    """Every check that needs no model; returns the checkpoint's facts (K, V, codec name)."""
    for flag, value in (("--ckpt", args.ckpt), ("--prompts", args.prompts), ("--out", args.out)):
        if value is None:
            raise UserError(f"{flag} is required (or --benchmark NAME --data DIR: README, Reproducing the published "
                            "numbers)")

    for flag, value in (("--batch-size", args.batch_size), ("--limit", args.limit), ("--duration", args.duration),
                        ("--max-duration", args.max_duration)):
        checks.positive(flag, value)
    checks.output_file(args.out)
    if not is_shards(args.prompts) and not Path(args.prompts).is_file():
        raise FileNotFoundError(f"--prompts {args.prompts} not found (a caption CSV/.txt/.jsonl or token shards)")
    if args.reference is not None and not is_shards(args.reference) and not Path(args.reference).is_dir():
        raise FileNotFoundError(f"--reference {args.reference} not found (an audio folder or token shards)")
    if set(args.metrics) & {"fad", "kl"} and args.reference is None and not is_shards(args.prompts):
        raise UserError("FAD/KL need references: pass --reference (or shard prompts), or --metrics clap")
    embedder_kwargs(args)
    facts = checks.peek_checkpoint(args.ckpt)
    checks.plan_of(facts, args, {}, duration=args.max_duration or args.duration)  # every generation option, once
    return facts


def build_suite(args: argparse.Namespace, facts: Any, embedders: dict[str, str], codec: Any, device: torch.device):
    """The metric suite; a missing T5 and every missing embedder weight file are named in one error."""

    try:
        checks.check_text_encoder(facts, args.text_encoder, args.allow_random_text_encoder)
        missing_t5 = ""
    except UserError as err:
        missing_t5 = str(err)
    try:
        suite = AudioEvalSuite(args.metrics, embedders, embedder_kwargs(args), args.allow_random_embedders,
                               args.seed, codec=codec).to(device)
    except FileNotFoundError as err:
        raise FileNotFoundError(" | ".join(m for m in (missing_t5, str(err)) if m)) from None
    if missing_t5:
        raise UserError(missing_t5)
    return suite


def random_weights(facts: Any, gen: Any, suite: Any) -> dict[str, Any]:
    """Which parts of this evaluation had random weights, and the sentence that says so (empty when none)."""

    parts = {"codec": bool(getattr(gen.codec, "random_weights", False)),
             "text_encoder": bool(getattr(gen.text_encoder, "is_random", False)),
             "embedders": suite.random_embedders,
             "checkpoint_trained_with": list(facts.random_parts)}
    used = [name for name in ("codec", "text_encoder", "embedders") if parts[name]]
    return {**parts, "note": describe_random(used + list(facts.random_parts))}


def _report(args: argparse.Namespace, metrics: dict, items: list, skipped: dict, facts: Any, gen: Any, suite: Any,
            embedders: dict, world: int, config: Any, decoding: dict) -> dict[str, Any]:
    """The JSON report: metrics, what was skipped and random, every setting, the seed of every item."""
    return {
        "metrics": metrics,
        "num_items": len(items) - skipped["too_short"],
        "skipped": skipped,
        "random_weights": random_weights(facts, gen, suite),
        "settings": {
            "ckpt": str(args.ckpt), "prompts": args.prompts, "reference": args.reference, "metrics": args.metrics,
            "embedders": {m: embedders[m] for m in args.metrics}, "embedder_kwargs": embedder_kwargs(args),
            "random_embedders": args.allow_random_embedders, "batch_size": args.batch_size,
            "max_duration": args.max_duration, "duration": args.duration, "extend_stride": args.extend_stride,
            "lufs": args.lufs, "world_size": world,
            "codec": gen.codec.name, "sample_rate": gen.sample_rate, "fast_decoding": gen.fast,
            "decoding": asdict(config),
            "decoding_overrides": decoding,
        },
        "seeds": {"base": args.seed, "rule": "batch b (items b*batch_size ...) uses seed + b*batch_size",
                  "items": {item.key: args.seed + (i // args.batch_size) * args.batch_size
                            for i, item in enumerate(items)}},
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run the evaluation; returns the report on global rank 0 (None elsewhere).

    Order: arguments, items and references, codec, embedders (their weights), and only then the model and T5."""
    facts = check_args(args)
    rank, world, device = init_distributed(args.device)
    try:
        items, skipped = load_items(args, facts.num_codebooks, facts.codebook_size)
    except ValueError as err:  # a malformed caption file: the message names the file and line
        raise UserError(f"--prompts: {err}") from None
    items, skipped["unreadable_reference"] = check_readable(items, args.skip_bad)
    if not items:
        raise UserError("no evaluation items left (see the skip messages above)")
    melody = uses_melody(args, facts, items)
    codec = load_codec(args.codec or facts.codec, device=device)
    embedders = {"fad": args.fad_embedder, "kl": args.kl_embedder, "clap": args.clap_embedder}
    suite = build_suite(args, facts, embedders, codec, device)
    if suite.needs_reference and any(i.path is None and i.codes is None for i in items):
        raise UserError("FAD/KL need references: pass --reference (or shard prompts), or --metrics clap")
    gen = MagnetGenerator.from_pretrained(args.ckpt, device=device, text_encoder=args.text_encoder, codec=codec,
                                          allow_random_text_encoder=args.allow_random_text_encoder,
                                          fast=False if args.no_fast else None)
    decoding = decoding_overrides(args)
    chroma = chroma_metric(gen.sample_rate, device) if melody else None
    plan = gen.plan(args.max_duration or args.duration, extend_stride=args.extend_stride, **decoding)
    config = plan.config
    bar = None
    if rank == 0 and not args.no_progress:
        calls = math.ceil(math.ceil(len(items) / args.batch_size) / world)
        bar = tqdm(total=calls * plan.steps, unit="step", desc=f"evaluating ({world} ranks)")
    with torch.no_grad():
        evaluate_items(gen, suite, items, rank=rank, world_size=world, batch_size=args.batch_size, seed=args.seed,
                       max_duration=args.max_duration, default_duration=args.duration, decoding=decoding,
                       extend_stride=args.extend_stride, melody=melody, chroma=chroma,
                       lufs=args.lufs, progress=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    metrics = suite.compute()
    chroma_cosine = None if chroma is None else float(chroma.compute())
    too_short = all_sum(suite.skipped, device)
    if rank != 0:
        return None
    skipped["too_short"] = too_short
    report = _report(args, metrics, items, skipped, facts, gen, suite, embedders, world, config, decoding)
    return add_to_report(report, facts, chroma_cosine)


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """The JSON report, written atomically (a temp file renamed over the target)."""

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, f".{out.name}.tmp*")  # left by a killed run
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def run_benchmark(args: argparse.Namespace) -> int:
    """--benchmark: prepare, or generate + score + the JSON and Markdown reports (cli/benchmark.py)."""
    report = benchmark.run(args, decoding_overrides, embedder_kwargs)
    if report is not None:
        write_report(report, args.out)
        markdown = paths(args)["markdown"]
        benchmark.write_markdown(report, markdown)
        log.info("%s: %s -> %s, %s", report["benchmark"], {k: v["value"] for k, v in report["metrics"].items()
                                                           if isinstance(v, dict) and "value" in v}, args.out,
                 markdown)
        if report["random_weights"]["note"]:
            log.warning("%s (recorded in the report)", report["random_weights"]["note"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:

    args = build_parser().parse_args(pop_debug_flag(sys.argv[1:] if argv is None else argv))
    expand_args(args, "ckpt", "prompts", "reference", "out", "codec", "text_encoder", "vggish_ckpt", "passt_ckpt",
                "clap_ckpt", "clap_tokenizer", "data", "benchmark_csv", "eval_set", "generated", "reference_stats",
                "markdown")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with user_errors(CheckpointError):
            if args.benchmark is not None:
                return run_benchmark(args)
            report = evaluate(args)
            if report is not None:
                write_report(report, args.out)
                log.info("metrics %s -> %s", report["metrics"], args.out)
                if report["random_weights"]["note"]:
                    log.warning("%s (recorded in the report)", report["random_weights"]["note"])
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0

