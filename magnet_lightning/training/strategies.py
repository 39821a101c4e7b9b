"""Distributed strategies of the recipes: DDP is Lightning's own; sharded training is `MagnetFSDPStrategy`, FSDP2
(`fully_shard`) through Lightning's `ModelParallelStrategy` and the LightningModule's `configure_model`.

Spelling: ``strategy: fsdp2`` in a config, ``--trainer.strategy fsdp2`` on the command line (a name registered in
Lightning's `StrategyRegistry` when this module is imported: the recipe CLI imports it), or the ``class_path`` form
``magnet_lightning.training.strategies.MagnetFSDPStrategy`` with ``init_args`` in YAML. The dotted names of the FSDP1
strategy this replaces (``magnet_lightning.cli.MagnetFSDPStrategy``, written in older run folders' config.yaml, and
``magnet_lightning.training.strategies.MagnetFSDPStrategy``) are registered as names too.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from magnet_lightning.training.fsdp import ShardingConfig, shard_model
from magnet_lightning.training.sharded_checkpoint import (
    TENSOR_KEYS,
    is_sharded,
    load_sharded,
    save_sharded,
    stored_keys,
)

STRATEGY_NAME = "fsdp2"
LEGACY_NAMES = ("magnet_lightning.cli.MagnetFSDPStrategy", "magnet_lightning.training.strategies.MagnetFSDPStrategy")


class MagnetFSDPStrategy(ModelParallelStrategy):
    """FSDP2 over every process (data parallel; no tensor parallelism): each transformer `Layer` sharded, then the
    model (`magnet_lightning.training.fsdp.shard_model`), with FSDP2's mixed-precision policy. Works on CPU processes
    (gloo) as on GPUs (NCCL). EMA works (each rank averages its own shards: `magnet_lightning.training.ema`).

    Checkpoints are sharded folders written atomically (`magnet_lightning.training.sharded_checkpoint`), resumable
    with any number of processes; ``magnet-convert sharded DIR OUT.ckpt`` makes one file of one for generation.

    Args:
        param_dtype: compute dtype of the gathered parameters, 'auto' (bfloat16 on CUDA, float32 on CPU),
            'bfloat16', 'float16' or 'float32'; master weights and optimizer state stay float32.
        reduce_dtype: dtype of the gradient reduction.
        reshard_after_forward: free each Layer's gathered parameters after its forward.
        activation_checkpointing: recompute each Layer's activations in the backward pass (the same as
            ``--model.activation_checkpointing true``; kept here for the FSDP1 strategy's option of that name).
        save_distributed_checkpoint: True: sharded checkpoint folders; False: one full file gathered on rank 0.
        process_group_backend: 'nccl' / 'gloo' (default: by device).
        timeout: collective timeout.
    """

    def __init__(self, param_dtype: str = "auto", reduce_dtype: str = "float32", reshard_after_forward: bool = True,
                 activation_checkpointing: bool = False, save_distributed_checkpoint: bool = True,
                 process_group_backend: str | None = None, timeout: timedelta | None = default_pg_timeout):
        super().__init__(save_distributed_checkpoint=save_distributed_checkpoint,
                         process_group_backend=process_group_backend, timeout=timeout)
        self.sharding = ShardingConfig(param_dtype, reduce_dtype, reshard_after_forward)
        self.activation_checkpointing = activation_checkpointing

    def _configure_launcher(self) -> None:
        """Every process gets the launcher, as under Lightning's DDPStrategy: its `launch` spawns the other ranks
        only in the first process, and in every process sets the intra-op threads (cpus / processes, unless
        OMP_NUM_THREADS is set). Lightning's ModelParallelStrategy gives it to the first process only, so the ranks
        it spawned computed with all the machine's threads and rank 0 with its share: a layer norm's weight gradient,
        summed over rows in per-thread chunks, rounded differently on rank 1 than in a rerun with OMP_NUM_THREADS
        set (what --reproduce replays), and the run did not reproduce bit for bit."""
        assert self.cluster_environment is not None
        self._launcher = _SubprocessScriptLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    def setup_environment(self) -> None:
        # one data-parallel dimension over all processes (the parent's 'auto' would make nodes x tensor parallel)
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def shard(self, model: nn.Module) -> nn.Module:
        """Called from the LightningModule's `configure_model` with its family model."""
        if self.activation_checkpointing:
            model.transformer.activation_checkpointing = True
        return shard_model(model, self.device_mesh["data_parallel"], self.sharding, self.root_device)

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        if not self._save_distributed_checkpoint:
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        tensors = {key: checkpoint.pop(key) for key in TENSOR_KEYS if key in checkpoint}
        tensors.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))})
        save_sharded(path, tensors, checkpoint, self.global_rank, self.barrier)

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None) -> dict[str, Any]:
        """A sharded folder (any world size): live weights and optimizer state loaded here; the returned dict's
        ``state_dict`` holds the stored ``state_dict`` entry as this rank's shards (the EMA average under EMA, read
        by the EMA callback; ``current_model_state`` the live weights then). A single file: Lightning's loader."""
        path = Path(self.broadcast(str(checkpoint_path)))
        if not is_sharded(path):
            return super().load_checkpoint(path, weights_only)
        live = get_model_state_dict(self.model)
        tensors: dict[str, Any] = {"state_dict": live}
        tensors.update({f"optimizer_{i}": get_optimizer_state_dict(self.model, opt)
                        for i, opt in enumerate(self.optimizers)})
        fitting = self.lightning_module.trainer.state.fn == TrainerFn.FITTING
        with_ema = fitting and "current_model_state" in stored_keys(path)  # validate: the EMA weights, as DDP
        if with_ema:  # 'state_dict' holds the average: read it into copies, the live weights from 'current_model_state'
            tensors["state_dict"] = {key: value.detach().clone() for key, value in live.items()}
            tensors["current_model_state"] = live
        meta = load_sharded(path, tensors)
        set_model_state_dict(self.model, live)
        for i, optimizer in enumerate(self.optimizers):
            set_optimizer_state_dict(self.model, optimizer, tensors[f"optimizer_{i}"])
        meta.update({key: tensors[key] for key in TENSOR_KEYS if key in tensors})
        return meta


def register_strategy_names() -> None:
    """Register 'fsdp2' (and the legacy dotted names) in Lightning's StrategyRegistry, once (the Trainer looks
    a strategy string up lower-cased)."""
    for name in (STRATEGY_NAME, *(legacy.lower() for legacy in LEGACY_NAMES)):
        if name not in StrategyRegistry:
            StrategyRegistry.register(name, MagnetFSDPStrategy, description="FSDP2 of magnet_lightning")


register_strategy_names()
