"""Token sampling for both families' decoding: temperature, top-k, top-p, greedy, with static shapes.

Sampling uses the exponential race (Gumbel-max): for probabilities p and i.i.d. noise E ~ Exp(1),
argmax_i p_i / E_i is distributed as Categorical(p / sum p). The noise is drawn by the caller from a
`torch.Generator`, so one step is a pure function of its inputs: no host synchronisation, no data-dependent shapes,
which is what lets the fast path capture the whole decoding step in a CUDA graph and give the same tokens as the plain
path for the same seed.

Shapes: B batch, T frames, V codebook size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

MIN_TEMPERATURE = 0.01
"""Temperatures are clamped to this inside the softmax, as in the reference (greedy decoding is `noise=None`)."""


class Sampled(NamedTuple):
    tokens: torch.Tensor
    """long [B, T]: chosen token ids."""
    confidence: torch.Tensor
    """float32 [B, T]: probability of each chosen token under the tempered distribution (renormalised over the top k
    with top-k sampling, as the reference; see `sample_tokens`)."""


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Zero every probability below the k-th largest of its row (ties with it are kept). [..., V] -> [..., V],
    not renormalised."""
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    kth = probs.kthvalue(probs.shape[-1] - k + 1, dim=-1, keepdim=True).values  # the k-th largest
    return probs.masked_fill(probs < kth, 0.0)


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most probable tokens until their mass exceeds p. [..., V] -> [..., V].

    A token is kept when the mass of the tokens sorted before it is <= p (the reference's rule), so the most probable
    token is always kept.
    """
    if p <= 0.0 or p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep_sorted = mass_before <= p
    keep = torch.empty_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return probs.masked_fill(~keep, 0.0)


def race(weights: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The exponential race: argmax_i weights_i / noise_i, a draw from Categorical(weights / sum weights) for noise
    from `draw_noise`. [..., V] -> long [...]."""
    return (weights / noise.clamp(min=1e-30)).argmax(dim=-1)


def draw_noise(shape: tuple[int, ...], generator: torch.Generator | Sequence[torch.Generator] | None,
               device: torch.device, out: torch.Tensor | None = None) -> torch.Tensor:
    """Exp(1) noise [B, ...] float32 for `sample_tokens`; written into `out` when given (a static buffer).
    `generator`: one for the batch, or one per row (row b drawn from generator b: a row's noise does not depend on
    the batch it is in)."""
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=device)
    if isinstance(generator, Sequence):
        if len(generator) != out.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {out.shape[0]} rows")
        for row, row_generator in zip(out, generator):
            row.exponential_(generator=row_generator)
        return out
    return out.exponential_(generator=generator)


def sample_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    noise: torch.Tensor | None,
    top_k: int = 0,
    top_p: float = 0.0,
    confidence_before_top_k: bool = False,
) -> Sampled:
    """Sample one token per position, as audiocraft's MAGNeT step does.

    probs = softmax(logits / max(temperature, 0.01)); then top-p sampling when top_p > 0, else top-k when top_k > 0,
    else plain sampling. Greedy tokens (noise None) are the argmax of the logits. A temperature below 0.01 samples at
    0.01, as the reference does (its annealed temperature reaches 0 at the last step): it is not greedy.
    The confidence is the chosen token's probability under probs, except for a top-k sample, whose confidence is
    taken from the renormalised top-k distribution (the reference filters the probabilities in place) unless
    `confidence_before_top_k`.

    Args:
        logits: [B, T, V] (any float dtype; computed in float32).
        temperature: 0-dim or [1] float tensor.
        noise: Exp(1) noise [B, T, V] from `draw_noise`, or None for greedy decoding at every step.
    Returns:
        `Sampled(tokens [B, T], confidence [B, T])`.
    """
    logits = logits.float()
    temperature = temperature.float().reshape(())
    probs = torch.softmax(logits / temperature.clamp(min=MIN_TEMPERATURE), dim=-1)  # [B, T, V]
    greedy = logits.argmax(dim=-1)  # [B, T]
    if noise is None:
        return Sampled(greedy, probs.gather(-1, greedy[..., None])[..., 0])
    if top_p > 0.0:
        filtered = top_p_filter(probs, top_p)
    else:
        filtered = top_k_filter(probs, top_k)
        if top_k > 0 and not confidence_before_top_k:
            probs = filtered / filtered.sum(dim=-1, keepdim=True)
    tokens = race(filtered, noise)
    return Sampled(tokens, probs.gather(-1, tokens[..., None])[..., 0])


def sample_next_tokens(logits: torch.Tensor, temperature: float, noise: torch.Tensor, top_k: int = 0,
                       top_p: float = 0.0) -> torch.Tensor:
    """One token per row, as audiocraft's autoregressive step samples: softmax(logits / temperature), then top-p
    sampling when top_p > 0, else top-k when top_k > 0, else plain sampling (no confidence is computed).

    Args:
        logits: [..., V] (computed in float32); temperature: > 0 (greedy decoding is the caller's argmax).
        noise: Exp(1) noise [..., V] from `draw_noise`.
    Returns:
        long [...] token ids.
    """
    logits = logits.float()
    probs = torch.softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)  # x / 1 is x: one op less
    return race(top_p_filter(probs, top_p) if top_p > 0.0 else top_k_filter(probs, top_k), noise)
