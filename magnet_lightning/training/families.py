"""The training layer's family table: each family's objective for one batch (objective.py holds the losses,
masking.py the masks), keyed by the model families' names (models/registry.py).

`MagnetLightningModule` looks its family up here and calls `objective(...)`; it never asks which family it trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from magnet_lightning.config import MaskingConfig
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.models.melody import ChromaInput
from magnet_lightning.training.masking import draw_stages, hybrid_training_masks, sample_training_masks
from magnet_lightning.training.objective import ar_loss, hybrid_loss, magnet_loss


@dataclass
class BatchLoss:
    loss: torch.Tensor
    """The scalar loss the optimiser sees."""
    logged: dict[str, torch.Tensor]
    """Extra values to log under train/ and val/ (per codebook, AR / non-AR parts)."""
    stage: int | None = None
    """The one codebook stage the whole batch drew (MAGNeT's per-stage training curves), else None."""


@dataclass
class BatchInputs:
    """What one objective call sees. codes long [B, K, T]; text_states [B, S, E]; text_mask bool [B, S]."""

    codes: torch.Tensor
    padding: torch.Tensor | None
    text_states: torch.Tensor
    text_mask: torch.Tensor
    masking: MaskingConfig
    stage_gen: torch.Generator
    mask_gen: torch.Generator
    stage: int | None = None
    """Fix the stage (validation of every stage), else drawn with stage_gen."""
    chroma: ChromaInput | None = None
    """A melody model's chroma (its fusion's rows; dropped items absent), else None."""


def _stages(inputs: BatchInputs) -> torch.Tensor:
    codes, masking = inputs.codes, inputs.masking
    if inputs.stage is not None:
        return torch.full((codes.shape[0],), inputs.stage, dtype=torch.long)
    return draw_stages(codes.shape[0], codes.shape[1], masking.per_sample_stage, inputs.stage_gen,
                       masking.stage_weights or None)


def magnet_objective(model: MagnetTransformer, inputs: BatchInputs) -> BatchLoss:
    """Draw a stage, span-mask it, cross-entropy of the masked tokens (magnet_spec.md §4)."""
    stages = _stages(inputs)
    masked = sample_training_masks(inputs.codes, stages, model.mask_token_id, inputs.masking.span_len,
                                   inputs.padding, inputs.mask_gen)
    per_sample = inputs.masking.per_sample_stage and inputs.stage is None
    loss = magnet_loss(model, inputs.codes, masked, inputs.text_states, inputs.text_mask, per_sample, inputs.chroma)
    return BatchLoss(loss, {}, None if inputs.masking.per_sample_stage else int(stages[0]))


def ar_objective(model: ARTransformer, inputs: BatchInputs) -> BatchLoss:
    """Teacher-forced cross-entropy of every codebook over the delay pattern."""
    result = ar_loss(model, inputs.codes, inputs.text_states, inputs.text_mask, inputs.padding, inputs.chroma)
    return BatchLoss(result.loss, {f"loss_codebook{k}": v for k, v in enumerate(result.per_codebook.detach())})


def hybrid_objective(model: HybridMagnetTransformer, inputs: BatchInputs) -> BatchLoss:
    """An autoregressive prompt of random length per item, then MAGNeT's masking of one stage; one cross-entropy."""
    masks = hybrid_training_masks(inputs.codes, model.pattern.delays, _stages(inputs), model.mask_token_id,
                                  inputs.masking.span_len, inputs.padding, inputs.mask_gen)
    result = hybrid_loss(model, inputs.codes, masks, inputs.text_states, inputs.text_mask, inputs.chroma)
    return BatchLoss(result.loss, {"loss_ar": result.ar, "loss_nar": result.nar})


@dataclass(frozen=True)
class TrainingFamily:
    objective: Callable[..., BatchLoss]
    """objective(model, BatchInputs) -> BatchLoss."""
    validate_per_stage: bool
    """Validation scores each codebook stage in its own pass (else one pass scores the batch)."""


TRAINING_FAMILIES: dict[str, TrainingFamily] = {
    MagnetTransformer.family: TrainingFamily(magnet_objective, validate_per_stage=True),
    ARTransformer.family: TrainingFamily(ar_objective, validate_per_stage=False),
    HybridMagnetTransformer.family: TrainingFamily(hybrid_objective, validate_per_stage=False),
}
