"""`magnet-evaluate` on a melody-conditioned checkpoint: audiocraft's protocol (its MusicGen solver's evaluation,
`ChromaCosineSimilarityMetric`). Each item is generated with its own reference clip as the melody, and the chroma
cosine similarity of the generated clip against that reference (metrics/chroma.py, at the model's sample rate, 12
bins, radix2_exp 14, argmax: the reference's `chroma_base`) joins the report's metrics as `chroma_cosine`.
The same holds for `--benchmark` runs (the eval set's clip of each caption is its melody; the
report's per-clip scores gain `chroma_cosine` too, the corpus figure its bootstrap interval). `--no-melody` evaluates
such a checkpoint from the captions alone (no chroma metric). A text-only checkpoint's evaluation and report are
unchanged.
"""

from __future__ import annotations

import argparse
from typing import Any

from magnet_lightning.errors import UserError
from magnet_lightning.metrics.benchmarks.melody import chroma_figure, reference_melody
from magnet_lightning.metrics.chroma import ChromaCosineSimilarity

PROTOCOL = "reference"
"""The report's `settings.melody` of a melody evaluation: each item's reference clip is its melody."""


def add_melody_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-melody", action="store_true",
                        help="melody-conditioned checkpoints: generate from the captions alone (default: each item "
                             "with its reference clip as the melody, scored by chroma cosine similarity, as "
                             "audiocraft)")


def uses_melody(args: argparse.Namespace, facts: Any, items: list) -> bool:
    """Whether this evaluation conditions on the references (checked before the model loads: every item needs one)."""
    if facts.melody is None or args.no_melody:
        return False
    missing = [item.key for item in items if item.path is None and item.codes is None]
    if missing:
        raise UserError(f"{args.ckpt} is melody-conditioned: it is evaluated with each item's reference clip as the "
                        f"melody, and {len(missing)} items have none (e.g. {missing[:3]}): pass --reference (or "
                        "shard prompts), or --no-melody")
    return True


def chroma_metric(sample_rate: int, device: Any):
    """The chroma cosine similarity of a melody evaluation (the reference's settings at the model's rate)."""
    return ChromaCosineSimilarity(sample_rate=int(sample_rate)).to(device)


def add_to_report(report: dict, facts: Any, chroma_cosine: float | None) -> dict:
    """The chroma figure (computed on every rank: a collective) and the melody setting of a melody-conditioned
    checkpoint's report (others: unchanged)."""
    if facts.melody is None:
        return report
    report["settings"]["melody"] = PROTOCOL if chroma_cosine is not None else None
    if chroma_cosine is not None:
        report["metrics"]["chroma_cosine"] = chroma_cosine
    return report


def benchmark_melody(args: argparse.Namespace, facts: Any, evalset: Any, settings: dict):
    """--benchmark: item -> its melody (its reference clip), or None; a melody-conditioned checkpoint's generation
    settings record the protocol (a folder generated otherwise is refused on resume)."""
    if facts.melody is None:
        return None
    settings["melody"] = None if args.no_melody else PROTOCOL
    return None if args.no_melody else reference_melody(evalset)


def add_benchmark_chroma(args: argparse.Namespace, evalset: Any, generated: Any, metrics: dict,
                         per_clip: list[dict]) -> None:
    """--benchmark: the chroma cosine figure (with its interval) and each clip's value, against its reference."""
    pairs = [(generated / f"{item['id']}.wav", evalset.path(item)) for item in evalset.items]
    metrics["chroma_cosine"], values = chroma_figure(pairs, evalset.sample_rate, resamples=args.bootstrap,
                                                     seed=args.seed)
    for clip, value in zip(per_clip, values):
        clip["chroma_cosine"] = value
