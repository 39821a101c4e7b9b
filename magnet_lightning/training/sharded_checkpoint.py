"""Sharded checkpoints of the FSDP2 strategy (`torch.distributed.checkpoint`, DCP): one folder per checkpoint,
written so that a killed write never harms the previous one, read back at any world size, and consolidated into one
ordinary `.ckpt` file for generation, export and evaluation (`magnet-convert sharded DIR OUT.ckpt`).

A checkpoint ``NAME.ckpt/`` is a folder: DCP's ``.metadata`` and ``__R_0.distcp`` files (one per rank) hold the
tensors (``state_dict``: the weights, the EMA average when training with EMA; ``current_model_state``: the live
weights under EMA; ``optimizer_0``: the optimizer state keyed by parameter name), and ``meta.pt`` everything else
Lightning saves (hyper-parameters, step, loops, schedulers, callbacks). DCP stores each tensor with its global shape
and offsets, so a checkpoint written by N ranks loads on M ranks.

Atomic write: every rank writes into ``.NAME.ckpt.tmp`` beside the target; after a barrier, rank 0 renames any
previous ``NAME.ckpt`` to ``.NAME.ckpt.old``, renames the new folder into place and deletes the old one. A kill
during the write leaves the previous checkpoint as it was; a kill between the two renames (microseconds) leaves it as
``.NAME.ckpt.old``, which `restore_interrupted` (run by ``--ckpt_path last``) renames back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

from magnet_lightning.checkpoint.hub import SHARDED_META, is_sharded  # noqa: F401  (is_sharded: part of this API)
from magnet_lightning.training.checkpoint_io import _fsync_dir

META = SHARDED_META
"""The file of a sharded checkpoint with everything but the sharded tensors (Lightning's name for it too)."""
TENSOR_KEYS = ("state_dict", "current_model_state")
"""Checkpoint entries that hold sharded weights (with the optimizer states, `optimizer_N`)."""


def stored_keys(path: str | os.PathLike) -> set[str]:
    """Top-level entries with tensors in a sharded checkpoint ('state_dict', 'optimizer_0', ...)."""
    metadata = FileSystemReader(str(path)).read_metadata()
    return {key.split(".", 1)[0] for key in metadata.state_dict_metadata}


def save_sharded(path: str | os.PathLike, tensors: dict[str, Any], meta: dict[str, Any], rank: int,
                 barrier: Callable[[], None]) -> None:
    """Write `tensors` (every rank its shards) and `meta` (rank 0) as the sharded checkpoint `path`, atomically.
    Called on every rank with the same `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed write
        tmp.mkdir(parents=True)
    barrier()
    dcp.save(tensors, checkpoint_id=str(tmp))  # files fsynced by DCP's writer
    if rank == 0:
        with open(tmp / META, "wb") as f:
            torch.save(meta, f)
            f.flush()
            os.fsync(f.fileno())
        _swap_into_place(tmp, path)
    barrier()


def _swap_into_place(tmp: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.is_dir():
        os.rename(path, old)
    elif path.exists():  # a single-file checkpoint of the same name
        path.unlink()
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def restore_interrupted(folder: str | os.PathLike) -> list[Path]:
    """Rename back each ``.NAME.old`` of `folder` whose ``NAME`` is missing (a write killed between its two renames);
    returns the restored checkpoints. Safe to call from several processes at once."""
    folder = Path(folder)
    restored = []
    for old in folder.glob(".*.old") if folder.is_dir() else []:
        target = folder / old.name[1:-len(".old")]
        if is_sharded(old) and not target.exists():
            try:
                os.rename(old, target)
                restored.append(target)
            except OSError:  # another rank got there first
                pass
    return restored


def load_sharded(path: str | os.PathLike, tensors: dict[str, Any]) -> dict[str, Any]:
    """Fill `tensors` (this rank's shards, e.g. from `get_model_state_dict`) in place from the sharded checkpoint
    `path`, whatever the world size it was written with; returns its `meta.pt` entries."""
    dcp.load(tensors, checkpoint_id=str(path))
    return torch.load(Path(path) / META, map_location="cpu", weights_only=True)


def consolidate(path: str | os.PathLike) -> dict[str, Any]:
    """A sharded checkpoint as one ordinary Lightning checkpoint dict in this process (no process group): full
    tensors for ``state_dict`` (and ``current_model_state`` under EMA) with every `meta.pt` entry. The optimizer
    state is left out: it is keyed by parameter name, not in Lightning's layout (resume from the folder)."""
    state: dict[str, Any] = {}
    _load_state_dict(state, storage_reader=FileSystemReader(str(path)), planner=_EmptyStateDictLoadPlanner(),
                     no_dist=True)
    checkpoint = torch.load(Path(path) / META, map_location="cpu", weights_only=True)
    checkpoint.update({key: state[key] for key in TENSOR_KEYS if key in state})
    return checkpoint
