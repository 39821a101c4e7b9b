"""The training losses of both families.

- MAGNeT: cross-entropy of the stage's head on the masked, non-padded positions of that stage only (`magnet_loss`).
- Autoregressive (MusicGen): cross-entropy of every codebook at every valid, non-padded position of the delay layout,
  averaged per codebook and then over the K codebooks, as audiocraft's `MusicGenSolver._compute_cross_entropy`
  (`ar_loss`; the pure part is `ar_cross_entropy`).
Both are pure tensor functions without host synchronisation. Text corruption (CFG dropout, word dropout) happens
before the text encoder and is the same for both (conditioning.TextDropout).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.models.melody import ChromaInput
from magnet_lightning.training.masking import MaskedBatch


def stage_targets(codes: torch.Tensor, stages: torch.Tensor | int) -> torch.Tensor:
    """Ground truth of each sample's stage: codes [B, K, T] -> [B, T]."""
    if isinstance(stages, int):
        return codes[:, stages]
    return codes[torch.arange(codes.shape[0], device=codes.device), stages.to(codes.device)]


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean CE over positions where loss_mask [B, T] is True; logits [B, T, V], targets [B, T]. No host sync."""
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    weights = loss_mask.flatten().to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp(min=1)


def magnet_loss(
    model: MagnetTransformer,
    codes: torch.Tensor,
    masked: MaskedBatch,
    text_states: torch.Tensor,
    text_mask: torch.Tensor,
    per_sample_stage: bool,
    chroma: ChromaInput | None = None,
) -> torch.Tensor:
    """Forward the corrupted codes at their stage(s) (with a melody model's chroma) and score the stage's masked
    positions."""
    stage = masked.stages.to(codes.device) if per_sample_stage else int(masked.stages[0])
    logits = model(masked.inputs, text_states, text_mask, stage, heads="stage", chroma=chroma)  # [B, T, V]
    return masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)


class ARLoss(NamedTuple):
    loss: torch.Tensor
    """Scalar: the mean over codebooks of each codebook's mean cross-entropy (the training loss)."""
    per_codebook: torch.Tensor
    """[K]: each codebook's mean cross-entropy over its scored positions (0 where none is scored); for logging."""


def ar_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> ARLoss:
    """Cross-entropy of teacher-forced logits [B, K, T, V] against codes [B, K, T] where mask [B, K, T] is True.

    Positions where mask is False never matter: their logits may be NaN (as `ARTransformer.forward` returns them)
    and their codes any id; they get neither loss nor gradient. No host synchronisation.
    """
    safe_logits = logits.masked_fill(~mask[..., None], 0.0)
    targets = codes.masked_fill(~mask, 0)
    per_token = F.cross_entropy(safe_logits.flatten(0, 2).float(), targets.flatten(), reduction="none")
    weights = mask.to(per_token.dtype)
    per_codebook = (per_token.view_as(weights) * weights).sum(dim=(0, 2)) / weights.sum(dim=(0, 2)).clamp(min=1)
    return ARLoss(per_codebook.mean(), per_codebook)


def ar_loss(
    model: ARTransformer,
    codes: torch.Tensor,
    text_states: torch.Tensor,
    text_mask: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    chroma: ChromaInput | None = None,
) -> ARLoss:
    """The autoregressive objective of a batch: teacher-forced forward of codes [B, K, T] (un-delayed) with text
    states [B, S, E] / text_mask [B, S] (and a melody model's chroma), scored on every position valid in the delay
    layout and not padding (padding_mask [B, T], True = real audio, as the DataModule's batches)."""
    prediction = model(codes, text_states, text_mask, chroma)
    mask = prediction.mask
    if padding_mask is not None:
        mask = mask & padding_mask[:, None, :].to(mask.device)
    return ar_cross_entropy(prediction.logits, codes, mask)


class HybridLoss(NamedTuple):
    loss: torch.Tensor
    """Scalar: the mean cross-entropy over every scored code (prompt codes and masked generated codes together)."""
    ar: torch.Tensor
    """The mean over the prompt codes (for logging; 0 when an item has none)."""
    nar: torch.Tensor
    """The mean over the masked generated codes (for logging)."""


def hybrid_loss(model, codes: torch.Tensor, batch, text_states: torch.Tensor, text_mask: torch.Tensor,
                chroma: ChromaInput | None = None) -> HybridLoss:
    """Hybrid-MAGNeT's objective (models/hybrid.py): one forward of the corrupted codes (masking.HybridBatch) under
    the hybrid attention mask; cross-entropy of the prompt codes (predicted autoregressively) and of the masked codes
    of each item's stage after its prompt (predicted as MAGNeT), one mean over all of them, as one loss."""
    memory = model.prepare_text(text_states, text_mask, chroma)
    logits = model.hybrid_logits(batch.inputs, memory, batch.boundary, batch.stages)  # [B, K, T, V]
    per_token = F.cross_entropy(logits.flatten(0, 2).float(), codes.flatten(), reduction="none").view_as(codes)

    def mean(mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(per_token.dtype)
        return (per_token * weights).sum() / weights.sum().clamp(min=1)

    return HybridLoss(mean(batch.ar_mask | batch.nar_mask), mean(batch.ar_mask).detach(), mean(batch.nar_mask).detach())
