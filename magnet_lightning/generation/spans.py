"""MAGNeT decoding's schedules and span bookkeeping (magnet_spec.md §7): the per-step mask rates, temperatures and
guidance coefficients of a stage, the scoring units (span chunks in 'nonoverlap' mode, tokens in 'stride1' mode), and
which units a step re-masks. Pure tensor functions with static shapes (the fast path runs them in CUDA graphs).

Shapes: B batch, T frames, N span chunks, U scoring units (N or T), V codebook size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from magnet_lightning.generation.magnet_config import DecodingConfig

FIXED_SCORE = -1e4
"""Score of units that must never be re-masked (scores are 'unconfidence': the highest are re-masked)."""


@dataclass
class StageSchedule:
    """Per-step values of one stage (s steps), precomputed once so a step only gathers them by index."""

    mask_counts: torch.Tensor
    """long [s, B]: units to re-mask at each step (between 1 and the free units; 0 if nothing is free)."""
    cfg_coef: torch.Tensor
    """float32 [s]: guidance coefficient, max_cfg_coef at step 0, min_cfg_coef at the last step."""
    temperature: torch.Tensor
    """float32 [s]: temperature, `temperature` at step 0, 0 at the last step when annealed."""
    mask_rate: torch.Tensor = field(default=None)
    """float32 [s]: gamma_j = cos(pi tau_j / 2)."""

    @property
    def num_steps(self) -> int:
        return self.cfg_coef.shape[0]


def reference_mask_rates(steps: int) -> torch.Tensor:
    """gamma_j = cos(pi/2 * tau_j), tau = linspace(0, 1, s), in float32 one step at a time, as the reference computes
    it (its mask counts truncate gamma_j * units in float32, so the rounding matters). float32 [s] on the CPU."""
    tau = torch.linspace(0.0, 1.0, steps)
    return torch.stack([torch.cos(t * math.pi * 0.5) for t in tau])


def stage_schedule(steps: int, free_units: torch.Tensor, config: DecodingConfig) -> StageSchedule:
    """Schedule of a stage decoded in `steps` steps with free_units [B] (long) maskable units per item.

    Mask counts max(trunc(gamma_j * units), 1) (float32 as the reference), at most the free units; the CFG
    coefficient gamma_j * max + (1 - gamma_j) * min; the temperature T0 * (s - 1 - j) / s (or T0 * (1 - tau_j) with
    `anneal_from_initial`).
    """
    gamma = reference_mask_rates(steps)  # float32 [s]
    free = free_units.to("cpu")
    counts = torch.trunc(gamma[:, None] * free[None, :].float()).clamp(min=1.0).long()  # [s, B]
    counts = torch.minimum(counts, free[None, :])
    g64 = gamma.double()
    cfg = g64 * config.max_cfg_coef + (1.0 - g64) * config.min_cfg_coef
    left = torch.arange(steps - 1, -1, -1, dtype=torch.float64)  # steps left after each step: s-1 .. 0
    if not config.anneal_temperature:
        temp = torch.full((steps,), float(config.temperature), dtype=torch.float64)
    elif config.anneal_from_initial:
        temp = config.temperature * left / max(steps - 1, 1)
    else:
        temp = config.temperature * (left / steps)
    device = free_units.device
    return StageSchedule(counts.to(device), cfg.float().to(device), temp.float().to(device), gamma)


def num_chunks(num_frames: int, span_len: int) -> int:
    """N = ceil(T / L): the last chunk is shorter when L does not divide T (the output keeps the full length)."""
    return -(-num_frames // span_len)


def chunks_to_frames(chunk_values: torch.Tensor, span_len: int, num_frames: int) -> torch.Tensor:
    """[B, N] -> [B, T]: each chunk's value on its frames (expand + flatten: no host synchronisation)."""
    expanded = chunk_values[..., None].expand(*chunk_values.shape, span_len)  # [B, N, L]
    return expanded.flatten(-2)[:, :num_frames]


def frames_to_chunks(frame_values: torch.Tensor, span_len: int, pad_value) -> torch.Tensor:
    """[B, T] -> [B, N, L], the tail of the last chunk filled with pad_value."""
    num_frames = frame_values.shape[-1]
    pad = num_chunks(num_frames, span_len) * span_len - num_frames
    return F.pad(frame_values, (0, pad), value=pad_value).unflatten(-1, (-1, span_len))


def initial_scores(fixed: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Scores [B, U] at a stage's start: 0 for free units, FIXED_SCORE for units whose frames are all given."""
    if config.span_arrangement == "nonoverlap":
        fixed = frames_to_chunks(fixed, config.span_len, True).all(dim=-1)  # [B, N]
    return torch.where(fixed, FIXED_SCORE, 0.0).float()


def free_units(fixed: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Number of maskable units per item, long [B]."""
    return (initial_scores(fixed, config) > FIXED_SCORE / 2).sum(dim=-1)


def _descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each entry when its row is sorted by descending score. long [B, U].

    Ties are broken as torch's default (unstable) sort breaks them, because that is what the reference's `argsort`
    does: spans of decoded tokens all score about -L * 1e4 and their order decides which of them a late 'stride1'
    step re-masks.
    """
    order = scores.argsort(dim=-1, descending=True)
    positions = torch.arange(scores.shape[-1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def _nonoverlap_remask(scores: torch.Tensor, counts: torch.Tensor, span_len: int, num_frames: int) -> torch.Tensor:
    """The `counts[b]` chunks with the highest scores, as a frame mask [B, T]."""
    chosen = _descending_ranks(scores) < counts[:, None]  # [B, N]
    return chunks_to_frames(chosen, span_len, num_frames)


def _first_cover(scores: torch.Tensor, span_len: int) -> torch.Tensor:
    """Rank of the first span covering each token, when the spans [s, s + L) are sorted by descending span score
    (the sum of their token scores; stable for ties). scores [B, T] -> float32 [B, T], T >= L.

    A token's first covering span is the best ranked of the L spans starting in [t - L + 1, t]: a sliding minimum.
    The union of the u best spans is then exactly the tokens whose first cover is < u.
    """
    num_frames = scores.shape[-1]
    span_scores = scores.unfold(-1, span_len, 1).sum(dim=-1)  # [B, T - L + 1]
    ranks = _descending_ranks(span_scores).float()
    padded = F.pad(ranks, (span_len - 1, span_len - 1), value=math.inf)  # [B, T + L - 1]
    return padded.unfold(-1, span_len, 1).amin(dim=-1)[:, :num_frames]


def _stride1_minimal(scores: torch.Tensor, counts: torch.Tensor, span_len: int) -> torch.Tensor:
    """The union of the fewest top spans that covers at least `counts[b]` maskable tokens (those not fixed by an
    earlier step), never re-masking a decoded token. scores [B, T] -> bool [B, T]."""
    maskable = scores > FIXED_SCORE / 2
    first_cover = _first_cover(scores, span_len).masked_fill(~maskable, math.inf)
    index = (counts - 1).clamp(min=0)[:, None]
    threshold = first_cover.sort(dim=-1).values.gather(-1, index)  # [B, 1]
    return maskable & (first_cover <= threshold) & (counts[:, None] > 0)


def _half_even(x: torch.Tensor) -> torch.Tensor:
    """round(x / 2) with ties to even (Python's round), on long tensors."""
    return torch.round(x.double() / 2).long()


def _stride1_reference(scores: torch.Tensor, counts: torch.Tensor, span_len: int) -> torch.Tensor:
    """audiocraft's least-probable-span masking (magnet_spec.md §7.3) with static shapes. scores [B, T] -> bool [B, T].

    For a target n = max(count, L) the reference binary-searches the number u of top spans in [n // L, n - L + 1]:
    mid = round((lo + hi) / 2); while lo < mid < hi it evaluates the union of the first mid spans, moving hi to mid
    when the union covers more than n tokens and lo otherwise; it returns the union of the last evaluated mid. Here
    the union's size for every u is one cumulative histogram of first-cover ranks, and the search runs a fixed number
    of masked iterations (enough for any T), so no step depends on data on the host.
    """
    batch, num_frames = scores.shape
    first_cover = _first_cover(scores, span_len)  # [B, T], finite values in [0, T - L]
    num_spans = num_frames - span_len + 1
    histogram = torch.zeros(batch, num_spans + 1, device=scores.device)
    histogram.scatter_add_(-1, first_cover.long(), torch.ones_like(first_cover))
    covered = torch.cumsum(histogram, dim=-1) - histogram  # covered[u]: tokens in the union of the first u spans
    target = counts.clamp(min=span_len)
    lo, hi = target // span_len, target - span_len + 1
    mid = _half_even(lo + hi)
    chosen = mid.clone()
    active = (mid > lo) & (mid < hi)
    for _ in range(num_frames.bit_length() + 1):
        chosen = torch.where(active, mid, chosen)
        over = covered.gather(-1, mid.clamp(0, num_spans)[:, None])[:, 0] > target
        hi = torch.where(active & over, mid, hi)
        lo = torch.where(active & ~over, mid, lo)
        mid = torch.where(active, _half_even(lo + hi), mid)
        active = active & (mid > lo) & (mid < hi)
    return (first_cover < chosen[:, None]) & (counts[:, None] > 0)


def _stride1_remask(scores: torch.Tensor, counts: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    span_len = min(config.span_len, scores.shape[-1])
    if config.stride1_cover == "minimal":
        return _stride1_minimal(scores, counts, span_len)
    return _stride1_reference(scores, counts, span_len)


def remask(scores: torch.Tensor, counts: torch.Tensor, fixed: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Frames of the current stage to (re-)mask at this step: bool [B, T], never a given (fixed) frame."""
    if config.span_arrangement == "nonoverlap":
        chosen = _nonoverlap_remask(scores, counts, config.span_len, fixed.shape[-1])
    else:
        chosen = _stride1_remask(scores, counts, config)
    return chosen & ~fixed


def unit_scores(confidence: torch.Tensor, masked: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    """Scores [B, U] for the next step: unconfidence of the units predicted now, FIXED_SCORE for all others.

    confidence [B, T]: probability of each frame's sampled token (written or not); masked [B, T]: frames predicted
    at this step. As in the reference, a chunk's score covers all of its frames ('max': 1 - the largest
    probability, 'prod': the sum of -log p), and a chunk counts as predicted when any of its frames was masked.
    """
    neg_log = -confidence.log()
    if config.span_arrangement == "stride1":
        return torch.where(masked, neg_log, FIXED_SCORE)
    chunk_masked = frames_to_chunks(masked, config.span_len, False).any(dim=-1)  # [B, N]
    if config.span_scoring == "max":
        score = 1.0 - frames_to_chunks(confidence, config.span_len, 0.0).amax(dim=-1)
    else:
        score = frames_to_chunks(neg_log, config.span_len, 0.0).sum(dim=-1)
    return torch.where(chunk_masked, score, FIXED_SCORE)
