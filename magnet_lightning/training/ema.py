"""Exponential moving average of the weights, as the reference keeps it (magnet_spec.md §6): decay 0.99, updated every
10 optimizer steps, bias-corrected (count <- count * decay + 1, new weight 1 / count).

Built on Lightning's `WeightAveraging`, which swaps the averaged weights in for validation, stores them as the
checkpoint's `state_dict` (so exported/generation weights are the EMA) and keeps the live weights for resuming.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn
from torch.optim.swa_utils import AveragedModel


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


class _Params(nn.Module):
    """Some parameters of a module, by position: what `TrainableEMA` averages (AveragedModel copies this module)."""

    def __init__(self, params: list[nn.Parameter]):
        super().__init__()
        self.params = nn.ParameterList(params)


class TrainableEMA(EMA):
    """The same EMA over the named parameters only (a LoRA run's adapters): the frozen base is neither copied nor
    averaged. Checkpoints keep `WeightAveraging`'s layout: averaged values in `state_dict`, live ones in
    `current_model_state`, the update count in `averaging_state`.

    Args:
        names: parameter names in the LightningModule (``model.transformer.layers.0...lora_A.weight``).
    """

    def __init__(self, names: list[str], decay: float = 0.99, every_n_steps: int = 10):
        super().__init__(decay, every_n_steps)
        self.names = list(names)
        self._live: _Params | None = None

    def _live_params(self, pl_module: nn.Module) -> _Params:
        if self._live is None:
            params = dict(pl_module.named_parameters())
            self._live = _Params([params[n] for n in self.names])
        return self._live

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._average_model = AveragedModel(self._live_params(pl_module), device=self._device,
                                                use_buffers=False, **self._kwargs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            self._average_model.update_parameters(self._live_params(pl_module))
            self._latest_update_step = trainer.global_step

    def _pairs(self, pl_module: nn.Module):
        return zip(self._average_model.module.parameters(), self._live_params(pl_module).parameters())

    @torch.no_grad()
    def _swap_models(self, pl_module) -> None:
        for average, current in self._pairs(pl_module):
            tmp = average.detach().clone()
            average.copy_(current)
            current.copy_(tmp)

    @torch.no_grad()
    def _copy_average_to_current(self, pl_module) -> None:
        for average, current in self._pairs(pl_module):
            current.copy_(average)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._average_model is None:
            return
        averaged = {n: p.detach().clone() for n, p in zip(self.names, self._average_model.module.parameters())}
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **averaged}
        checkpoint["averaging_state"] = {"n_averaged": self._average_model.n_averaged.detach().clone()}

    @torch.no_grad()
    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self._average_model is None or "current_model_state" not in checkpoint:
            return
        for name, average in zip(self.names, self._average_model.module.parameters()):
            average.copy_(checkpoint["state_dict"][name])
        self._average_model.n_averaged.copy_(checkpoint["averaging_state"]["n_averaged"])
        pl_module.load_state_dict(checkpoint["current_model_state"], strict=False)
