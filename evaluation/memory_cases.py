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
from magnet_lightning.checkpoint.lazy_load import empty_model, resolve_dtype
from magnet_lightning.config import model_preset
from magnet_lightning.models.layers import TextMemory
from magnet_lightning.models.registry import DEFAULT_FAMILY, build_model
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
    """The release-format file of `size` (written by tests/support/audiocraft_files.py; see memory_benchmark)."""
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


class _KeysValuesInLayer:
    """A layer's text keys/values computed when the layer unpacks them (inside its forward), not up front."""

    def __init__(self, attention: torch.nn.Module, text: torch.Tensor):
        self.attention, self.text = attention, text

    def __iter__(self):
        return iter(self.attention.text_keys_values(self.text))  # keys, values [B, H, S, Dh]


def text_memory_inside_layers(model: torch.nn.Module) -> None:
    """`prepare_text` reads every layer's cross-attention weights before the layers run, i.e. outside their FSDP2
    groups (still sharded there); here each layer computes its own text keys/values in its forward instead (the
    same arithmetic)."""

    def prepare_text(text_states: torch.Tensor, text_mask: torch.Tensor) -> TextMemory:
        text = model.text_proj(text_states) * text_mask[..., None].to(text_states.dtype)  # [B, S, D]
        return TextMemory([_KeysValuesInLayer(layer.cross_attention, text) for layer in model.transformer.layers])

    model.prepare_text = prepare_text


def _sharded_model(cfg, ctx: RankContext, checkpointing: bool) -> torch.nn.Module:
    """FSDP2: built on the meta device, every layer then the root sharded, each rank materialising its shard only."""
    model = empty_model(DEFAULT_FAMILY, cfg)
    text_memory_inside_layers(model)
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
    model = build_model(DEFAULT_FAMILY, cfg).to(ctx.device)
    if checkpointing:
        checkpoint_layers(model)
    if ctx.world_size == 1:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Gradients as views of the all-reduce buckets: one copy of the gradients, not two.
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)


def _stage_loss(model: torch.nn.Module, inner: torch.nn.Module, codes, states, mask, gen) -> torch.Tensor:
    stages = draw_stages(codes.shape[0], inner.cfg.num_codebooks, per_sample=False, generator=gen)
    masked = sample_training_masks(codes, stages, inner.mask_token_id, span_len=3, generator=gen)
    stage = int(stages[0])
    logits = model(masked.inputs, states, mask, stage, heads="stage")  # [B, T, V]
    return masked_cross_entropy(logits, stage_targets(codes, stage), masked.loss_mask)


def reset_peak(device: torch.device) -> None:
    """Start a new peak: VmHWM back to the current RSS (Linux: /proc/self/clear_refs), CUDA's peak statistics."""
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> dict:
    """The peak since `reset_peak`: RSS (VmHWM) and on CUDA max_memory_allocated, GB."""
    status = Path("/proc/self/status")
    out = {}
    if status.is_file():
        hwm = status.read_text().split("VmHWM:")[1].split()[0]
        out["rss"] = round(int(hwm) * 1024 / 1e9, 3)
    if device.type == "cuda":
        out["cuda"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    return out


def run_train(variant: dict, ctx: RankContext) -> dict:
    """One step; the peaks of its two phases apart: forward + backward (activations, where checkpointing acts) and
    the optimizer step (AdamW's moments created at the first step)."""
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
    _sync(ctx.device)
    reset_peak(ctx.device)
    before = peak_gb(ctx.device)  # the RSS now: weights (and on CUDA what is allocated)
    start = time.perf_counter()
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=cuda):
        loss = _stage_loss(model, inner, codes, states, mask, g)
    loss.backward()
    _sync(ctx.device)
    forward_backward, middle = peak_gb(ctx.device), time.perf_counter()
    reset_peak(ctx.device)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(ctx.device)
    step = peak_gb(ctx.device)
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    figures = {"seconds": round(time.perf_counter() - start, 2), "fwd_bwd_seconds": round(middle - start, 2),
               "loss": round(float(loss), 4), "local_parameters_m": round(local / 1e6, 1),
               "model_gb": _gb(cfg.num_parameters() * 4)}
    figures.update({f"before_step_{k}_gb": v for k, v in before.items()})
    figures.update({f"fwd_bwd_peak_{k}_gb": v for k, v in forward_backward.items()})
    figures.update({f"step_peak_{k}_gb": v for k, v in step.items()})
    return figures


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


IMPORTS_GB = 0.6
"""RSS of a worker after its imports (python, torch with its CUDA libraries, magnet_lightning)."""


def _parameters(size: str) -> int:
    return model_preset(size, codebook_size=2048, num_codebooks=4, text_dim=TEXT_DIM).num_parameters()


def load_needs_gb(variant: dict) -> float:
    """Host memory the variant needs at its peak (all ranks): the reference path holds the float16 file's tensors
    and the float32 model; ours one model in the requested dtype."""
    params = _parameters(variant["size"])
    if variant["loader"] == "reference":
        return IMPORTS_GB + params * (2 + 4) / 1e9
    return IMPORTS_GB + params * resolve_dtype(variant["dtype"]).itemsize * 1.1 / 1e9


def train_needs_gb(variant: dict) -> float:
    """Float32 weights, gradients and AdamW's two moments (16 bytes a parameter) per rank, 1/ranks of it under
    FSDP2, plus the imports and about 1 GB of activations and gathered layers."""
    share = 1 / variant["ranks"] if variant["strategy"] == "fsdp2" else 1
    return variant["ranks"] * (IMPORTS_GB + 1.0 + _parameters(variant["size"]) * 16 * share / 1e9)


@dataclass
class Case:
    run: Callable[[dict, RankContext], dict]
    """One rank of one variant -> its figures."""
    variants: Callable[[list[str]], list[dict]]
    """The variants for the given model sizes (each with its number of `ranks`)."""
    needs_gb: Callable[[dict], float]
    """Host memory a variant needs, all its ranks together (the driver skips what the machine cannot hold)."""


CASES: dict[str, Case] = {
    "load": Case(run_load, load_variants, load_needs_gb),
    "train": Case(run_train, train_variants, train_needs_gb),
}

