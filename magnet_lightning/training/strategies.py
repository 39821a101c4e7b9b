"""Distributed strategies of the recipes."""

from __future__ import annotations

from lightning.pytorch.strategies import FSDPStrategy

from magnet_lightning.models.layers import Layer


class MagnetFSDPStrategy(FSDPStrategy):
    """FSDP with one wrap unit per transformer `Layer` (the 1.5B model on many GPUs).

    Args:
        activation_checkpointing: recompute each Layer's activations in the backward pass (less memory).
        **kwargs: any other `FSDPStrategy` argument (sharding_strategy, state_dict_type, cpu_offload, ...).
    """

    def __init__(self, activation_checkpointing: bool = False, sharding_strategy: str = "FULL_SHARD",
                 state_dict_type: str = "full", **kwargs):
        if activation_checkpointing:
            kwargs["activation_checkpointing_policy"] = {Layer}
        super().__init__(auto_wrap_policy={Layer}, sharding_strategy=sharding_strategy,
                         state_dict_type=state_dict_type, **kwargs)
