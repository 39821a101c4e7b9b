"""Joining the torchrun process group (gloo on CPU, nccl on GPU) for the evaluator's ranks."""
from __future__ import annotations

import datetime
import os

import torch


def init_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device is None:
        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        else:
            device = "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return rank, world, dev


def all_sum(value: int, device: torch.device) -> int:
    if not torch.distributed.is_initialized():
        return value
    t = torch.tensor(value, device=device, dtype=torch.long)
    torch.distributed.all_reduce(t)
    return int(t)
