"""Exponential moving average of the weights, as the reference keeps it (magnet_spec.md §6): decay 0.99, updated every
10 optimizer steps, bias-corrected (count <- count * decay + 1, new weight 1 / count).

Built on Lightning's `WeightAveraging`, which swaps the averaged weights in for validation, stores them as the
checkpoint's `state_dict` (so exported/generation weights are the EMA) and keeps the live weights for resuming.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def bias_corrected_ema(decay: float):
    """avg_fn for torch's AveragedModel: the n-th update mixes in the live weight with 1 / sum_{i<n} decay^i."""

    def update(average: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = num_averaged.to(torch.float64) + 1
        count = (1 - decay**n) / (1 - decay)
        weight = (1 / count).to(average.dtype)
        return average + (current - average) * weight

    return update


class EMA(WeightAveraging):
    """Bias-corrected EMA of the LightningModule's weights, updated every `every_n_steps` optimizer steps."""

    def __init__(self, decay: float = 0.99, every_n_steps: int = 10, device: str | None = None):
        if not 0 < decay < 1 or every_n_steps < 1:
            raise ValueError(f"EMA needs 0 < decay < 1 and every_n_steps >= 1, got {decay}, {every_n_steps}")
        super().__init__(device=device, use_buffers=False, avg_fn=bias_corrected_ema(decay))
        self.decay = decay
        self.every_n_steps = every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and (step_idx + 1) % self.every_n_steps == 0
