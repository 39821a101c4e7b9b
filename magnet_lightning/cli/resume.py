"""What a run folder says when a run starts again on it (``--ckpt_path last``, a requeued job, ``--reproduce``):

- `checkpoint_entries`: the step (and the LoRA base) a checkpoint holds, read without loading its tensors (a file, or
  a sharded checkpoint folder's ``meta.pt``);
- `pinned_lora_base`: the base a LoRA run trained on, from its newest checkpoint, so a resume never re-picks it (the
  LoRA demo otherwise takes "the newest demo checkpoint", which a later demo run changes);
- `nothing_left`: the one line said, and nothing written, when the checkpoint a resume would start from is already
  at ``trainer.max_steps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint.hub import SHARDED_META, is_sharded
from magnet_lightning.cli.runs import checkpoints_in
from magnet_lightning.lora.files import CHECKPOINT_KEY


def checkpoint_entries(path: str | Path) -> dict[str, Any]:
    """``global_step`` and the LoRA base identity (``lora_base``, or None) of a checkpoint file or sharded folder;
    {} when it cannot be read (being written, not a checkpoint)."""
    path = Path(path)
    source = path / SHARDED_META if is_sharded(path) else path
    try:
        raw = torch.load(source, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # unreadable or half-written: not a candidate
        return {}
    return {"global_step": int(raw.get("global_step", 0)), CHECKPOINT_KEY: raw.get(CHECKPOINT_KEY)}


def checkpoint_step(path: str | Path) -> int | None:
    return checkpoint_entries(path).get("global_step")


def pinned_lora_base(run_dir: Path) -> str | None:
    """The base (``init_from``) the LoRA run in `run_dir` trained on: the source recorded in its newest checkpoint;
    None when the folder holds no LoRA checkpoint."""
    for path in sorted(checkpoints_in(run_dir), key=lambda p: p.stat().st_mtime_ns, reverse=True):
        base = checkpoint_entries(path).get(CHECKPOINT_KEY)
        if base:
            return str(base["source"])
    return None


def nothing_left(ckpt_path: str | None, max_steps: int) -> str | None:
    """The line to say when resuming from `ckpt_path` has no step left before `max_steps`; None otherwise."""
    if not ckpt_path or max_steps is None or max_steps < 0:
        return None
    step = checkpoint_step(ckpt_path)
    if step is None or step < max_steps:
        return None
    return (f"nothing to do: {ckpt_path} is at step {step} and trainer.max_steps is {max_steps}; give a larger "
            f"--trainer.max_steps to train on (nothing was written)")
