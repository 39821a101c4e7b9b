"""The cases `memory_benchmark.py` measures; each runs in fresh processes (one per rank) so that a process's peak RSS
is the case's own.

A case is a function `run(variant: dict, ctx: RankContext) -> dict` (figures of this rank) registered in CASES with
the variants to run; `memory_benchmark.py` starts `variant["ranks"]` worker processes per variant (process group
over gloo, or NCCL on CUDA, when more than one) and records per rank: peak RSS (`ru_maxrss`), the RSS right after
the imports (the interpreter and torch: `baseline_gb`), and on CUDA `torch.cuda.max_memory_allocated`. A new case (a
LoRA fine-tuning step, say) is one more function and one more CASES entry.

- `load`: a release-format magnet `state_dict.bin` (real config and sizes, float16, random weights) loaded by our
  loader (`from_audiocraft`: memory-mapped file, meta model, one converted copy) in a requested dtype, or by the
  reference path (torch.load of the whole file, the model built with its random initialisation, load_state_dict
  copying into it: what audiocraft does and what we did before issue 18).
- `train`: one training step (forward + backward + AdamW step) of the real-size magnet model on batch 1 x 10 s
  (500 frames), under DDP or FSDP2 (`fully_shard` on every transformer layer, then on the root), with or without
  activation checkpointing (torch.utils.checkpoint around every layer's forward).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.utils.checkpoint import checkpoint

from magnet_lightning.checkpoint.audiocraft import from_audiocraft, read_audiocraft
from magnet_lightning.checkpoint.lazy_load import empty_model
from magnet_lightning.config import model_preset
from magnet_lightning.models import build_model
from magnet_lightning.training.masking import draw_stages, sample_training_masks
from magnet_lightning.training.objective import masked_cross_entropy, stage_targets

RELEASES = {"small": "magnet-small-10secs", "medium": "magnet-medium-10secs"}
"""Model size -> the released config whose state_dict.bin the load case reads."""
TEXT_DIM, TEXT_LEN, FRAMES = 768, 20, 500


@dataclass
class RankContext:
    rank: int
    world_size: int
    device: torch.device
    workdir: Path
    """Where release-format files are written once and reused."""


def _gb(nbytes: float) -> float:
    return round(nbytes / 1e9, 3)


def _model_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ------------------------------------------------------------------------------------------------------------- load
def release_file(workdir: Path, size: str) -> Path:
    """The release-format file of `size` (written by tests/audiocraft_files.py's helper; see memory_benchmark)."""
    return workdir / f"{RELEASES[size]}.state_dict.bin"


def reference_load(path: Path) -> torch.nn.Module:
    """The copying path: the whole file read, a randomly initialised float32 model, load_state_dict into it."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    ckpt = read_audiocraft(path, raw=raw)
    model = build_model(ckpt.spec.family, ckpt.config, ckpt.spec.delays or None)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


def run_load(variant: dict, ctx: RankContext) -> dict:
    path = release_file(ctx.workdir, variant["size"])
    start = time.perf_counter()
    if variant["loader"] == "reference":
        model = reference_load(path).to(ctx.device)
    else:
        model = from_audiocraft(path, dtype=variant["dtype"], device=ctx.device)
    _sync(ctx.device)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "model_gb": _gb(_model_bytes(model)),
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}


# ------------------------------------------------------------------------------------------------------------ train
def _checkpointed(forward: Callable, *args: Any) -> torch.Tensor:
    return checkpoint(forward, *args, use_reentrant=False)


def checkpoint_layers(model: torch.nn.Module) -> None:
    """Recompute every transformer layer's activations in the backward pass instead of keeping them."""
    for layer in model.transformer.layers:
        layer.forward = functools.partial(_checkpointed, layer.forward)


def _init_(model: torch.nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    """Random weights on materialised (possibly sharded) parameters; the buffers put back as built."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.normal_(0.0, 0.02)
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])


def _sharded_model(cfg, ctx: RankContext, checkpointing: bool) -> torch.nn.Module:
    """FSDP2: built on the meta device, every layer then the root sharded, each rank materialising its shard only."""
    model = empty_model("magnet", cfg)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    if checkpointing:
        checkpoint_layers(model)
    for layer in model.transformer.layers:
        fully_shard(layer)
    fully_shard(model)
    model.to_empty(device=ctx.device)
    _init_(model, {n: b.to(ctx.device) for n, b in buffers.items()})
    return model


def _replicated_model(cfg, ctx: RankContext, checkpointing: bool) -> torch.nn.Module:
    model = build_model("magnet", cfg).to(ctx.device)
    if checkpointing:
        checkpoint_layers(model)
    if ctx.world_size == 1:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _stage_loss(model: torch.nn.Module, inner: torch.nn.Module, codes, states, mask, gen) -> torch.Tensor:
    stages = draw_stages(codes.shape[0], inner.cfg.num_codebooks, per_sample=False, generator=gen)
    masked = sample_training_masks(codes, stages, inner.mask_token_id, span_len=3, generator=gen)
    stage = int(stages[0])
    logits = model(masked.inputs, states, mask, stage, heads="stage")  # [B, T, V]
    return masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)


def run_train(variant: dict, ctx: RankContext) -> dict:
    cfg = model_preset(variant["size"], codebook_size=2048, num_codebooks=4, text_dim=TEXT_DIM)
    torch.manual_seed(0)
    make = _sharded_model if variant["strategy"] == "fsdp2" else _replicated_model
    model = make(cfg, ctx, variant["checkpointing"])
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(ctx.rank)
    codes = torch.randint(0, cfg.codebook_size, (variant["batch"], cfg.num_codebooks, FRAMES), generator=g)
    states = torch.randn(variant["batch"], TEXT_LEN, TEXT_DIM, generator=g)
    mask = torch.ones(variant["batch"], TEXT_LEN, dtype=torch.bool)
    codes, states, mask = codes.to(ctx.device), states.to(ctx.device), mask.to(ctx.device)
    cuda = ctx.device.type == "cuda"
    start = time.perf_counter()
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=cuda):
        loss = _stage_loss(model, inner, codes, states, mask, g)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(ctx.device)
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    return {"seconds": round(time.perf_counter() - start, 2), "loss": round(float(loss), 4),
            "local_parameters_m": round(local / 1e6, 1), "model_gb": _gb(cfg.num_parameters() * 4)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if dist.is_initialized():
        dist.barrier()


def load_variants(sizes: list[str]) -> list[dict]:
    out = []
    for size in sizes:
        out.append({"size": size, "loader": "reference", "dtype": "float32", "ranks": 1})
        for dtype in ("float32", "bfloat16", "float16"):
            out.append({"size": size, "loader": "ours", "dtype": dtype, "ranks": 1})
    return out


def train_variants(sizes: list[str]) -> list[dict]:
    return [{"size": size, "strategy": strategy, "checkpointing": ckpt, "batch": 1, "ranks": 2}
            for size in sizes for strategy in ("ddp", "fsdp2") for ckpt in (False, True)]


CASES: dict[str, tuple[Callable[[dict, RankContext], dict], Callable[[list[str]], list[dict]]]] = {
    "load": (run_load, load_variants),
    "train": (run_train, train_variants),
}
"""name -> (run one rank of a variant, the variants for the given model sizes)."""

