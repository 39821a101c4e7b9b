"""Optimizer and learning-rate schedule (magnet_spec.md §6): AdamW or D-Adaptation Adam, linear warm-up then cosine
or inverse-square-root decay, all in optimizer steps."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

OPTIMIZERS = ("adamw", "dadam")
SCHEDULES = ("cosine", "inverse_sqrt", "constant")


@dataclass
class OptimConfig:
    """Optimizer settings. The paper's small music runs use 'dadam' with lr 1; the 1.5B run AdamW with lr 1e-4."""

    name: str = "adamw"
    """'adamw' (torch, fused on CUDA) or 'dadam' (D-Adaptation Adam, `dadaptation` package, decoupled decay)."""
    lr: float = 1e-4
    """Peak learning rate (a multiplier of the adapted step size for 'dadam': use 1.0)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """Adam's (beta1, beta2)."""
    eps: float = 1e-8
    """Adam's epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay, applied to every parameter as in the reference."""
    schedule: str = "cosine"
    """'cosine' (to min_lr_ratio at total_steps), 'inverse_sqrt' (audio-MAGNeT) or 'constant' after warm-up."""
    warmup_steps: int = 4000
    """Linear warm-up from 0 over this many optimizer steps."""
    total_steps: int = 0
    """Steps of the cosine; 0 = the trainer's max_steps."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the cosine, as a fraction of lr."""

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.name!r}: choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: choose one of {SCHEDULES}")
        if len(self.betas) != 2 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(
                f"invalid optimizer settings: betas={self.betas}, lr={self.lr}, warmup={self.warmup_steps}"
            )


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig, device: torch.device):
    params = [p for p in params if p.requires_grad]
    if cfg.name == "dadam":
        from dadaptation import DAdaptAdam

        return DAdaptAdam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, decouple=True
        )
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of the peak learning rate after `step` optimizer steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "inverse_sqrt":
        return math.sqrt(max(cfg.warmup_steps, 1) / (step + 1))
    span = max(total_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    if cfg.schedule == "cosine" and total_steps <= cfg.warmup_steps:
        raise ValueError(
            f"cosine schedule needs total_steps ({total_steps}) > warmup_steps ({cfg.warmup_steps}): set "
            "optimizer.total_steps or trainer.max_steps"
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, total_steps))
