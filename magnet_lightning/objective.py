"""The training loss: cross-entropy of the stage's head on the masked, non-padded positions of that stage only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from magnet_lightning.masking import MaskedBatch
from magnet_lightning.models.magnet import MagnetTransformer


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
) -> torch.Tensor:
    """Forward the corrupted codes at their stage(s) and score the stage's masked positions."""
    stage = masked.stages.to(codes.device) if per_sample_stage else int(masked.stages[0])
    logits = model(masked.inputs, text_states, text_mask, stage, heads="stage")  # [B, T, V]
    return masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)
