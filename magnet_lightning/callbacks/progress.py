"""A training progress bar in optimizer steps: ``train: 120/240 [...] loss=...``.

Lightning's bar counts batches per epoch and titles it ``Epoch N/M``; with ``max_steps`` and no ``max_epochs`` it
prints ``Epoch 5/-2`` (Lightning issue #21925), and it shows the logger's ``v_num``. Step-based runs (every recipe
here) want one bar from the start (or resumed) step to ``max_steps`` across epochs.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """One bar over optimizer steps up to ``trainer.max_steps`` (per epoch when max_steps is not set)."""

    def _by_steps(self, trainer: L.Trainer) -> bool:
        return trainer.max_steps > 0

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        if not self._by_steps(trainer):
            return super().on_train_epoch_start(trainer, *_)
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # the first epoch of this fit (later epochs continue the same bar)
            bar.reset(total=trainer.max_steps)
            bar.initial = 0
            bar.n = trainer.global_step
            bar.set_description("train")
            bar.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._by_steps(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and bar.n != step and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._by_steps(trainer):
            return super().on_train_epoch_end(trainer, pl_module)
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's version (a W&B id fragment): noise on a progress bar
        return metrics
