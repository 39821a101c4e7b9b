"""A benchmark run of a melody-conditioned checkpoint, as audiocraft's MusicGen solver evaluates one: each caption
is generated with its own reference clip as the melody (`reference_melody`), and each generated clip is scored by
the chroma cosine similarity against that reference (`chroma_figure`: audiocraft's `ChromaCosineSimilarityMetric`,
metrics/chroma.py, per clip; the corpus figure weighs each clip by its chroma frames, as the metric's sums do, with a
bootstrap 95 % interval over clips).

Shapes: C channels, N samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from magnet_lightning.utils.audio import read_audio

from ..bootstrap import bootstrap, resample_counts
from ..chroma import ChromaCosineSimilarity


def reference_melody(evalset: Any):
    """item -> its reference clip [C, N] (the eval set's file, at the eval set's rate): the melody it follows."""
    return lambda item: read_audio(evalset.path(item))[0]


def chroma_figure(pairs: list[tuple[Path, Path]], rate: int, *, resamples: int = 1000,
                  seed: int = 0) -> tuple[dict[str, Any], list[float]]:
    """({value, ci95, frames}, per-clip values) of (generated, reference) files at `rate`, each generated clip
    compared with its reference over the reference's length."""
    sums, frames = [], []
    for generated, reference in pairs:
        metric = ChromaCosineSimilarity(sample_rate=rate)
        gen, ref = read_audio(generated)[0], read_audio(reference)[0]
        length = ref.shape[-1]
        gen = torch.nn.functional.pad(gen[..., :length], (0, max(0, length - gen.shape[-1])))
        metric.update(gen.mean(0, keepdim=True)[None], ref.mean(0, keepdim=True)[None], torch.tensor([length]), rate)
        sums.append(float(metric.cosine_sum))
        frames.append(float(metric.weight))
    values, weights = torch.tensor(sums, dtype=torch.float64), torch.tensor(frames, dtype=torch.float64)

    def weighted(w) -> float:
        w = torch.as_tensor(w, dtype=torch.float64)
        return float((w @ values) / (w @ weights))

    counts = resample_counts(len(pairs), resamples, seed)
    entry = {"value": float(values.sum() / weights.sum()), "ci95": bootstrap(weighted, counts),
             "frames": int(weights.sum())}
    return entry, [s / f for s, f in zip(sums, frames)]
