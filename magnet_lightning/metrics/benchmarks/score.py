"""A benchmark's figures from per-item features: the cards' FAD / KL / CLAP, and KAD, FAD∞, per-clip scores and
bootstrap 95 % intervals beside them.

Features per item (lists indexed like the eval set; frames F, segments S, width D):
- "distribution": [F, D] frames of the FAD / KAD / FAD∞ embedder (VGGish by default);
- "kl": [S, 527] PaSST label distributions of the segments; "clap": [1, 512] CLAP audio embedding.
Generated items also carry "text": [1, 512], the CLAP embedding of the caption.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..bootstrap import KADBootstrap, bootstrap, fad_inf_resampled, item_of_frames, resample_counts, weighted_fad
from ..fad import frechet_distance
from ..fad_inf import MIN_N, STEPS, fad_inf, gaussian
from ..kad import as_rows, kernel_audio_distance, median_pairwise_distance
from ..kl import kl_ref_gen

ROLES = ("distribution", "kl", "clap")


def embed_clip(wav: Tensor, rate: int, embedders: dict[str, Any]) -> dict[str, Tensor]:
    """wav [C, L] -> {role: features [rows, D]} for each role with an embedder (CPU float32)."""
    return {role: embedder.embed_frames(wav[None], rate)[0].float().cpu() for role, embedder in embedders.items()}


def _paired_kl(ref: list[Tensor], gen: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per item: Σ over segments of KL(ref ‖ gen), of KL(gen ‖ ref), and the segment count."""
    sums, reverse, counts = [], [], []
    for key, (p, q) in enumerate(zip(ref, gen)):
        if p.shape != q.shape:
            raise ValueError(f"item {key}: {p.shape[0]} reference segments but {q.shape[0]} generated ones")
        sums.append(kl_ref_gen(p, q).sum())
        reverse.append(kl_ref_gen(q, p).sum())
        counts.append(p.shape[0])
    return torch.stack(sums), torch.stack(reverse), torch.tensor(counts, dtype=torch.float64)


def _weighted(values: Tensor, counts: Tensor):
    return lambda w: float((torch.as_tensor(w, dtype=torch.float64) @ values) /
                           (torch.as_tensor(w, dtype=torch.float64) @ counts))


def distribution_figures(ref: list[Tensor], gen: list[Tensor], counts, inf_counts, seed: int,
                         steps: int = STEPS, min_n: int = MIN_N) -> dict[str, Any]:
    """FAD, KAD and FAD∞ of the generated frames against the reference frames, with their intervals."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the O(frames²) kernel sums on the GPU, if any
    ref_rows, gen_rows = as_rows(torch.cat(ref)).to(device), as_rows(torch.cat(gen)).to(device)
    ref_items, gen_items = item_of_frames(ref).to(device), item_of_frames(gen).to(device)
    mu_r, cov_r = gaussian(ref_rows)
    fad = float(frechet_distance(mu_r, cov_r, *gaussian(gen_rows)))
    bandwidth = median_pairwise_distance(gen_rows)
    kad = float(kernel_audio_distance(ref_rows, gen_rows, bandwidth))
    min_n = min(min_n, max(2, gen_rows.shape[0] // 2))
    inf = fad_inf(mu_r, cov_r, gen_rows, steps, min_n, seed)
    kad_boot = KADBootstrap(ref_rows, ref_items, gen_rows, gen_items, len(ref), bandwidth)
    return {
        "fad": {"value": fad, "ci95": bootstrap(lambda w: weighted_fad(ref_rows, ref_items, gen_rows, gen_items, w),
                                                counts)},
        "kad": {"value": kad, "ci95": bootstrap(kad_boot, counts), "bandwidth": bandwidth, "kernel": "gaussian",
                "scale": 100},
        "fad_inf": {"value": inf.score, "slope": inf.slope, "r2": inf.r2, "steps": steps, "min_n": min_n,
                    "ci95": bootstrap(lambda w: fad_inf_resampled(ref_rows, ref_items, gen_rows, gen_items, w,
                                                                  steps, min_n, seed), inf_counts)},
        "frames": {"reference": int(ref_rows.shape[0]), "generated": int(gen_rows.shape[0])},
    }


def figures(ref: dict[str, list[Tensor]], gen: dict[str, list[Tensor]], *, resamples: int = 1000,
            inf_resamples: int = 100, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """(corpus-level figures with intervals, per-clip scores) of paired reference / generated features."""
    n = len(gen["text"]) if "text" in gen else len(gen[next(iter(gen))])
    counts, inf_counts = resample_counts(n, resamples, seed), resample_counts(n, inf_resamples, seed + 1)
    out: dict[str, Any] = {"resamples": resamples, "fad_inf_resamples": inf_resamples, "level": 0.95}
    per_clip: list[dict[str, float]] = [{} for _ in range(n)]
    if "distribution" in gen:
        out.update(distribution_figures(ref["distribution"], gen["distribution"], counts, inf_counts, seed))
    if "kl" in gen:
        sums, reverse, segments = _paired_kl(ref["kl"], gen["kl"])
        out["kl"] = {"value": float(sums.sum() / segments.sum()), "ci95": bootstrap(_weighted(sums, segments), counts),
                     "segments": int(segments.sum())}
        out["kl_gen_ref"] = {"value": float(reverse.sum() / segments.sum()),
                             "ci95": bootstrap(_weighted(reverse, segments), counts)}
        for clip, (s, c) in zip(per_clip, zip(sums.tolist(), segments.tolist())):
            clip["kl"] = s / c
    if "clap" in gen and "text" in gen:
        scores = torch.stack([torch.nn.functional.cosine_similarity(a.double(), t.double(), eps=1e-8).squeeze()
                              for a, t in zip(gen["clap"], gen["text"])])
        out["clap"] = {"value": float(scores.mean()), "ci95": bootstrap(_weighted(scores, torch.ones(n,
                                                                                  dtype=torch.float64)), counts)}
        for clip, score in zip(per_clip, scores.tolist()):
            clip["clap"] = score
    return out, per_clip
