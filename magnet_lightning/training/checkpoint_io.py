"""Checkpoint writes that never leave a half-written file: write to a temporary file in the same folder, fsync, rename
(`AtomicCheckpointIO`, the trainer's `plugins`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file *in the target folder*, fsyncs it, then renames it over the target.

    Lightning's own writer stages local files in the system temp folder and moves them: across file systems (node
    /tmp -> shared storage) that move is a copy, so a job killed mid-copy leaves a truncated ``last.ckpt``. A rename
    within one folder is atomic: readers see the old or the new checkpoint, never half of one. Remote URLs
    (s3://, gs://, ...) use Lightning's writer (object stores replace objects atomically).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse directory fsync
        pass
    finally:
        os.close(fd)
