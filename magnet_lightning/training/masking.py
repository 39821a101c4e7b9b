"""Span masking: the one place where MAGNeT's training-time masking maths lives (arXiv 2401.04577 §3.1, App. C).

Training picks a codebook stage k, masks a cosine-scheduled fraction of stage k with spans of `span_len` frames, and
replaces every stage above k by MASK. Because spans overlap, the number of spans u that gives an *expected* union
coverage equal to the target rate is read from a look-up table built from the closed form
    m(u) = 1 - C(T - L, u) / C(T, u)
(u span starts drawn without replacement from T positions, each covering L frames).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    """Mask rate gamma(t) = cos(pi t / 2) for t in [0, 1]; gamma(0) = 1 (all masked), gamma(1) = 0."""
    return torch.cos(t * (math.pi / 2))


def expected_span_coverage(seq_len: int, span_len: int) -> torch.Tensor:
    """m(u) for u = 0 .. T-1: expected covered fraction of u random distinct span starts. float64 [T].

    Computed as 1 - prod_{j<u} (T - L - j) / (T - j), which equals 1 - C(T-L, u) / C(T, u) without overflow.
    """
    j = torch.arange(seq_len - 1, dtype=torch.float64)
    ratios = ((seq_len - span_len - j) / (seq_len - j)).clamp(min=0.0)
    keep = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(ratios, 0)])
    return 1.0 - keep


@lru_cache(maxsize=32)
def _span_count_lut(seq_len: int, span_len: int) -> torch.Tensor:
    coverage = expected_span_coverage(seq_len, span_len)
    targets = torch.arange(101, dtype=torch.float64) / 100
    return torch.searchsorted(coverage, targets, side="left").clamp(max=seq_len - 1)


def span_count_lut(seq_len: int, span_len: int) -> torch.Tensor:
    """LUT[p] = smallest number of spans u whose expected coverage m(u) reaches p / 100, p = 0..100. long [101]."""
    if seq_len < 1 or span_len < 1:
        raise ValueError(f"seq_len and span_len must be positive, got {seq_len}, {span_len}")
    return _span_count_lut(seq_len, span_len).clone()


def _rank_select(noise: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per row, True at the `counts[b]` positions with the smallest noise: a uniform draw without replacement."""
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    return ranks < counts[:, None]


def span_mask(
    mask_rate: torch.Tensor, seq_len: int, span_len: int, generator: torch.Generator | None = None,
    region_start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample span masks whose expected coverage is `mask_rate`.

    Args:
        mask_rate: [B] target fractions in [0, 1].
        seq_len: T, frames.
        span_len: L; with L <= 1 exactly round(n * rate) (at least 1) random frames are masked.
        region_start: long [B]: mask only frames >= region_start[b] (the rest of a Hybrid-MAGNeT item is its
            autoregressive prompt); the rate is then a fraction of the region's n = T - start frames, with the
            look-up table of length n. None: the whole sequence.
    Returns:
        bool [B, T], True = masked. Spans starting near the end are truncated at T (not wrapped).
    """
    device = mask_rate.device
    batch = mask_rate.shape[0]
    noise = torch.rand(batch, seq_len, generator=generator, device=generator.device if generator else device)
    noise = noise.to(device)
    start = torch.zeros(batch, dtype=torch.long, device=device) if region_start is None else region_start.to(device)
    if not bool(((start >= 0) & (start < seq_len)).all()):
        raise ValueError(f"region_start must be in [0, {seq_len}), got {start.tolist()}")
    noise = noise.masked_fill(torch.arange(seq_len, device=device)[None, :] < start[:, None], 2.0)  # never drawn
    length = seq_len - start  # [B]
    if span_len <= 1:
        counts = (mask_rate * length).round().long().clamp(min=1)
        return _rank_select(noise, torch.minimum(counts, length))
    percent = (mask_rate * 100).round().long().clamp(0, 100)
    counts = torch.stack([span_count_lut(int(n), span_len)[int(p)] for n, p in zip(length.tolist(),
                                                                                   percent.tolist())]) \
        if region_start is not None else span_count_lut(seq_len, span_len).to(device)[percent]
    counts = counts.to(device).clamp(min=1)
    starts = _rank_select(noise, counts).float()
    # A frame is masked if a span started within the previous L-1 frames: a left-padded running max.
    covered = F.max_pool1d(F.pad(starts[:, None], (span_len - 1, 0)), kernel_size=span_len, stride=1)
    return covered[:, 0].bool()


def draw_stages(
    batch: int,
    num_codebooks: int,
    per_sample: bool,
    generator: torch.Generator | None = None,
    weights: list[float] | None = None,
) -> torch.Tensor:
    """Codebook stages to train: long [B], one value repeated (the reference) or one per sample."""
    probs = torch.tensor(weights, dtype=torch.float) if weights else torch.ones(num_codebooks)
    if probs.numel() != num_codebooks:
        raise ValueError(f"{probs.numel()} stage weights for {num_codebooks} codebooks")
    draws = torch.multinomial(probs, batch if per_sample else 1, replacement=True, generator=generator)
    return draws.expand(batch).clone() if not per_sample else draws


class MaskedBatch(NamedTuple):
    inputs: torch.Tensor
    """long [B, K, T]: codes with stage-k spans and all stages above k replaced by MASK."""
    loss_mask: torch.Tensor
    """bool [B, T]: positions of stage k whose prediction is scored (masked and not padding)."""
    stages: torch.Tensor
    """long [B]: the stage of each sample (on the device it was drawn on)."""


def mask_codes(
    codes: torch.Tensor,
    stages: torch.Tensor,
    spans: torch.Tensor,
    mask_token_id: int,
    padding_mask: torch.Tensor | None = None,
) -> MaskedBatch:
    """Corrupt codes for stage-k training: stage k at `spans` -> MASK, stages > k -> MASK, stages < k kept.

    Args:
        codes: long [B, K, T] ground-truth tokens.
        stages: long [B] stage per sample.
        spans: bool [B, T] span mask of stage k.
        padding_mask: bool [B, T], True = real frame; padded frames are never scored.
    """
    levels = torch.arange(codes.shape[1], device=codes.device)[None, :, None]  # [1, K, 1]
    stage = stages.to(codes.device)[:, None, None]  # [B, 1, 1]
    hide = (levels > stage) | ((levels == stage) & spans[:, None, :])  # [B, K, T]
    inputs = codes.masked_fill(hide, mask_token_id)
    loss_mask = spans if padding_mask is None else spans & padding_mask
    return MaskedBatch(inputs, loss_mask, stages)


def sample_training_masks(
    codes: torch.Tensor,
    stages: torch.Tensor,
    mask_token_id: int,
    span_len: int,
    padding_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Draw cosine mask rates and span masks for codes [B, K, T] at the given stages [B], and corrupt them."""
    batch, _, seq_len = codes.shape
    t = torch.rand(batch, generator=generator, device=generator.device if generator else "cpu")
    spans = span_mask(cosine_schedule(t).to(codes.device), seq_len, span_len, generator)
    return mask_codes(codes, stages, spans, mask_token_id, padding_mask)


class HybridBatch(NamedTuple):
    inputs: torch.Tensor
    """long [B, K, T]: the codes, with the generated part corrupted as MAGNeT's stage-k training does."""
    boundary: torch.Tensor
    """long [B]: the first sequence step after the autoregressive prompt (b = prompt frames of stream 0 + 1)."""
    stages: torch.Tensor
    """long [B]: the stage each item's generated part trains."""
    ar_mask: torch.Tensor
    """bool [B, K, T]: prompt codes, scored autoregressively (padding excluded)."""
    nar_mask: torch.Tensor
    """bool [B, K, T]: the masked spans of stream `stage` after the prompt, scored as MAGNeT (padding excluded)."""


def hybrid_training_masks(
    codes: torch.Tensor,
    delays: tuple[int, ...],
    stages: torch.Tensor,
    mask_token_id: int,
    span_len: int,
    padding_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> HybridBatch:
    """Hybrid-MAGNeT's training corruption (models/hybrid.py): per item a prompt of P ~ U{0 .. T-1} frames of stream
    0, i.e. boundary step b = P + 1, so stream k keeps its first max(P - d_k, 0) frames (the delay-shifted prompt);
    after it, stage k's frames get cosine-rate span masks drawn within that part only, the stages above k are MASK
    and the stages below k are kept. codes [B, K, T] ground truth; stages long [B]."""
    batch, num_codebooks, num_frames = codes.shape
    gen_device = generator.device if generator else "cpu"
    prompt = torch.randint(0, num_frames, (batch,), generator=generator, device=gen_device).to(codes.device)
    boundary = prompt + 1
    delays_t = torch.tensor(delays, device=codes.device)
    kept = (prompt[:, None] - delays_t[None, :]).clamp(min=0)  # [B, K] prompt frames of each stream
    frames = torch.arange(num_frames, device=codes.device)
    in_prompt = frames[None, None, :] < kept[..., None]  # [B, K, T]
    stages = stages.to(codes.device)
    rate = cosine_schedule(torch.rand(batch, generator=generator, device=gen_device)).to(codes.device)
    region = kept.gather(1, stages[:, None])[:, 0]  # [B]: first generated frame of the stage's stream
    spans = span_mask(rate, num_frames, span_len, generator, region_start=region)  # [B, T]
    levels = torch.arange(num_codebooks, device=codes.device)[None, :, None]
    stage = stages[:, None, None]
    hide = ~in_prompt & ((levels > stage) | ((levels == stage) & spans[:, None, :]))
    real = torch.ones_like(in_prompt) if padding_mask is None else padding_mask[:, None, :].to(codes.device)
    nar = (levels == stage) & spans[:, None, :] & ~in_prompt
    return HybridBatch(codes.masked_fill(hide, mask_token_id), boundary, stages, in_prompt & real, nar & real)
