"""FSDP2 sharding of a family's model (`torch.distributed.fsdp.fully_shard`): each transformer `Layer` is one unit
(its parameters gathered for its forward and backward only, then freed), then the model itself (embeddings, norms,
heads). Mixed precision is FSDP2's own policy: parameters cast to `param_dtype` for compute, gradients reduced in
`reduce_dtype`, the master weights and the optimizer state stay float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from magnet_lightning.models.layers import Layer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ShardingConfig:
    """How `shard_model` shards and casts."""

    param_dtype: str = "auto"
    """Compute dtype of the gathered parameters: 'auto' (bfloat16 on CUDA, float32 on CPU), 'bfloat16',
    'float16' or 'float32'."""
    reduce_dtype: str = "float32"
    """dtype of the gradient reduction (float32 as the reference's fp32 master weights)."""
    reshard_after_forward: bool = True
    """Free each Layer's gathered parameters after its forward (gathered again for the backward): less memory."""

    def __post_init__(self) -> None:
        for name in ("param_dtype", "reduce_dtype"):
            value = getattr(self, name)
            if value not in DTYPES and not (name == "param_dtype" and value == "auto"):
                raise ValueError(f"{name}={value!r}: choose one of {sorted(DTYPES)}"
                                 + (" or 'auto'" if name == "param_dtype" else ""))

    def policy(self, device: torch.device) -> MixedPrecisionPolicy:
        """The policy on `device`: 'auto' is bfloat16 only on CUDA (CPU/gloo ranks compute in float32)."""
        param = self.param_dtype
        if param == "auto":
            param = "bfloat16" if device.type == "cuda" else "float32"
        return MixedPrecisionPolicy(param_dtype=DTYPES[param], reduce_dtype=DTYPES[self.reduce_dtype])


def shard_model(model: nn.Module, mesh, config: ShardingConfig, device: torch.device) -> nn.Module:
    """Shard `model` (a family's CodebookTransformer) in place over the 1-D `mesh`: every `Layer`, then the root.
    Idempotent (a sharded model is returned as is)."""
    if isinstance(model, FSDPModule):
        return model
    policy = config.policy(device)
    for module in model.modules():
        if isinstance(module, Layer):
            fully_shard(module, mesh=mesh, mp_policy=policy, reshard_after_forward=config.reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=config.reshard_after_forward)
    for name in type(model).sharded_forwards:  # each family declares its own (models/)
        register_fsdp_forward_method(model, name)
    model.transformer.layerwise_text = True  # a layer's weights exist only in its forward: K/V of text computed there
    return model


def local_numel(module: nn.Module) -> tuple[int, int]:
    """(parameters held by this rank, parameters of the whole model): a sharded parameter counts its local shard."""
    local = total = 0
    for p in module.parameters():
        total += p.numel()
        local += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
    return local, total
