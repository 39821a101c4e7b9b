"""Exponential moving average of the weights, as the reference keeps it (magnet_spec.md §6): decay 0.99, updated every
10 optimizer steps, bias-corrected (count <- count * decay + 1, new weight 1 / count).

Built on Lightning's `WeightAveraging`, which swaps the averaged weights in for validation, stores them as the
checkpoint's `state_dict` (so exported/generation weights are the EMA) and keeps the live weights for resuming.

Under FSDP2 (parameters sharded over the ranks) each rank averages its own shards (`ShardAverage`): the average is
elementwise, so the shard of the average is the average of the shard and no rank needs another's values; the EMA
costs each rank 1 / world size of the full copy that DDP keeps. Checkpoints store it as sharded `state_dict` like
the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.tensor import DTensor
from torch.optim.swa_utils import AveragedModel


def bias_corrected_ema(decay: float):
    """avg_fn for torch's AveragedModel: the n-th update mixes in the live weight with 1 / sum_{i<n} decay^i."""

    def update(average: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = num_averaged.to(torch.float64) + 1
        count = (1 - decay**n) / (1 - decay)
        weight = (1 / count).to(average.dtype)
        return average + (current - average) * weight

    return update


def _local(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter (the local shard of a DTensor; the tensor itself otherwise)."""
    return p.to_local() if isinstance(p, DTensor) else p


class ShardAverage:
    """The average of a (sharded) module's parameters as this rank's local shards, AveragedModel's rule: the first
    update copies, the n-th applies `avg_fn(average, current, n)`."""

    def __init__(self, module: nn.Module, avg_fn: Callable):
        named = [(name, p) for name, p in module.named_parameters()]
        self.names = [name for name, _ in named]
        self.shards = [_local(p).detach().clone() for _, p in named]
        self.avg_fn = avg_fn
        self.n_averaged = torch.zeros((), dtype=torch.long)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for average, p in zip(self.shards, module.parameters()):
            current = _local(p).detach()
            average.copy_(current if self.n_averaged == 0 else self.avg_fn(average, current, self.n_averaged))
        self.n_averaged += 1

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange the live weights and the average (validation runs on the average)."""
        for average, p in zip(self.shards, module.parameters()):
            live = _local(p)
            kept = live.clone()
            live.copy_(average)
            average.copy_(kept)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for average, p in zip(self.shards, module.parameters()):
            _local(p).copy_(average)

    def state_dict(self, module: nn.Module, like: dict[str, Any]) -> dict[str, Any]:
        """`like` (the module's sharded state dict) with the averaged parameters as DTensors of the same layout."""
        params = dict(module.named_parameters())
        average = {}
        for name, shard in zip(self.names, self.shards):
            p = params[name]
            average[name] = DTensor.from_local(shard, p.device_mesh, p.placements, shape=p.shape, stride=p.stride(),
                                               run_check=False) if isinstance(p, DTensor) else shard
        return {key: average.get(key, value) for key, value in like.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any], n_averaged: torch.Tensor) -> None:
        for name, shard in zip(self.names, self.shards):
            shard.copy_(_local(state[name]))
        self.n_averaged = n_averaged.detach().to(torch.long).cpu().reshape(())


class EMA(WeightAveraging):
    """Bias-corrected EMA of the LightningModule's weights, updated every `every_n_steps` optimizer steps; under
    FSDP2 (`ModelParallelStrategy`) each rank keeps the average of its own shards (`ShardAverage`)."""

    def __init__(self, decay: float = 0.99, every_n_steps: int = 10, device: str | None = None):
        if not 0 < decay < 1 or every_n_steps < 1:
            raise ValueError(f"EMA needs 0 < decay < 1 and every_n_steps >= 1, got {decay}, {every_n_steps}")
        super().__init__(device=device, use_buffers=False, avg_fn=bias_corrected_ema(decay))
        self.decay = decay
        self.every_n_steps = every_n_steps
        self._shards: ShardAverage | None = None
        self._sharded = False

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and (step_idx + 1) % self.every_n_steps == 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        """The averaged copy: a full one (AveragedModel) now, or under FSDP2 the local shards once the model is
        sharded (`on_fit_start`, or at a resume)."""
        self._sharded = isinstance(trainer.strategy, ModelParallelStrategy)
        if stage == "fit" and not self._sharded:
            self._average_model = AveragedModel(pl_module, device=self._device or pl_module.device,
                                                use_buffers=self._use_buffers, **self._kwargs)

    def _shard_average(self, pl_module) -> ShardAverage:
        if self._shards is None:
            self._shards = ShardAverage(pl_module, self._kwargs["avg_fn"])
        return self._shards

    def on_fit_start(self, trainer, pl_module) -> None:
        if self._sharded:
            self._shard_average(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._sharded:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            self._shard_average(pl_module).update(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_end(self, trainer, pl_module) -> None:
        if not self._sharded:
            return super().on_train_end(trainer, pl_module)
        self._shard_average(pl_module).copy_to(pl_module)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not self._sharded:
            return super().on_validation_epoch_start(trainer, pl_module)
        if self._shards is not None:
            self._shards.swap(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._sharded:
            return super().on_validation_epoch_end(trainer, pl_module)
        if self._shards is not None:
            self._shards.swap(pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if not self._sharded:
            return super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._shards is not None:
            checkpoint["current_model_state"] = checkpoint["state_dict"]
            checkpoint["state_dict"] = self._shards.state_dict(pl_module, checkpoint["state_dict"])
            checkpoint["averaging_state"] = {"n_averaged": self._shards.n_averaged.clone()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Sharded: the strategy has loaded the live weights; the average is `state_dict` (this rank's shards)."""
        if not self._sharded:
            return super().on_load_checkpoint(trainer, pl_module, checkpoint)
        shards = self._shard_average(pl_module)
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            shards.load_state_dict(checkpoint["state_dict"], checkpoint["averaging_state"]["n_averaged"])
