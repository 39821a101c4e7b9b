"""Training monitors: the total gradient norm and D-Adaptation's step size (`GradNormMonitor`), and the validation
losses seen so far (`ValLossHistory`, for the end-of-run summary)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch.distributed.tensor import DTensor


def total_grad_norm(parameters, reduce=None) -> torch.Tensor:
    """L2 norm of all gradients (float32); `reduce(tensor, reduce_op="sum")` sums squares over shards (FSDP)."""
    square = None
    for p in parameters:
        if p.grad is not None:
            grad = p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad  # FSDP2: this rank's shard
            part = grad.detach().float().pow(2).sum()
            square = part if square is None else square + part
    if square is None:
        return torch.zeros(())
    if reduce is not None:
        square = reduce(square, reduce_op="sum")
    return square.sqrt()


class GradNormMonitor(L.Callback):
    """Logs ``train/grad_norm`` (total L2 norm of the unscaled gradients, before clipping) every `log_every_n_steps`
    optimizer steps, and ``train/dadapt_d`` (D-Adaptation's step size) when the optimizer has one.

    Under a sharded strategy (FSDP, FSDP2) each rank holds a disjoint shard of the gradients, so squared norms are
    summed over ranks; under DDP the gradients are already identical on all ranks.
    """

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        every = max(1, trainer.log_every_n_steps)
        if trainer.global_step % every:
            return
        sharded = isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy))
        reduce = trainer.strategy.reduce if sharded else None
        pl_module.log("train/grad_norm", total_grad_norm(pl_module.parameters(), reduce), on_step=True,
                      on_epoch=False)
        d = optimizer.param_groups[0].get("d")
        if d is not None:
            pl_module.log("train/dadapt_d", float(d), on_step=True, on_epoch=False)


class ValLossHistory(L.Callback):
    """Remembers (step, val/loss) of every validation, so the end of a run can report first and last (across
    resumes: the history is part of the checkpoint)."""

    def __init__(self):
        self.history: list[tuple[int, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if value is not None and not trainer.sanity_checking:
            self.history.append((trainer.global_step, float(value)))

    def state_dict(self) -> dict:
        """Kept in checkpoints: after a resume the end summary still starts at the run's first validation."""
        return {"history": [[int(step), float(loss)] for step, loss in self.history]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [(int(step), float(loss)) for step, loss in state_dict.get("history", [])]
