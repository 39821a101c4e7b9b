"""Run folders: one folder per training run, found again when the run is resumed or its SLURM job requeued.

A run's files all live in ``RUN_DIR = run.root / run.name``: checkpoints, logs, Lightning's SLURM preemption
checkpoints (``hpc_ckpt_N.ckpt``, written to ``trainer.default_root_dir``) and ``wandb_id`` (the W&B run id, so a
requeued job logs to the same W&B run). Config values may say ``{run_dir}``; the recipe CLI replaces it with RUN_DIR.

The name, when not given: ``slurm-<job id>`` under SLURM (a requeued job keeps its id, so it finds its run again),
``torchrun-<rdzv id>`` under torchrun with ``--rdzv-id``, with ``--ckpt_path last`` the newest run under the root that
has a checkpoint, otherwise the start time (``20260131-142501``). Every process of one run must agree on it, so
several processes started without SLURM, a rendezvous id or a name are refused.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from magnet_lightning.training.sharded_checkpoint import is_sharded, restore_interrupted

RUN_DIR_VARIABLE = "MAGNET_RUN_DIR"  # the folder chosen by rank 0, inherited by the processes Lightning spawns
WANDB_ID_FILE = "wandb_id"
PLACEHOLDER = "{run_dir}"


@dataclass
class RunConfig:
    """Where a training run writes its files (`{run_dir}` in config values)."""

    root: str = "outputs/runs"
    """Folder of this config's runs; each run gets its own sub-folder ROOT/NAME."""
    name: str | None = None
    """Run folder name; give an existing one to continue that run. None: `slurm-<job id>` under SLURM, `torchrun-<rdzv
    id>` under torchrun --rdzv-id, the newest run with a checkpoint when --ckpt_path last, else the start time."""


def checkpoints_in(folder: Path) -> list[Path]:
    """Checkpoints under `folder`: files, and sharded checkpoint folders (FSDP2)."""
    return [p for p in folder.rglob("*.ckpt") if p.is_file() or is_sharded(p)] if folder.is_dir() else []


def newest_run(root: Path) -> Path | None:
    """The run folder under `root` holding the most recently written checkpoint, if any."""
    best, best_time = None, -1.0
    for run in (p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
        times = [c.stat().st_mtime for c in checkpoints_in(run)]
        if times and max(times) > best_time:
            best, best_time = run, max(times)
    return best


def _launcher_name(env: Mapping[str, str]) -> str | None:
    # Lightning's SLURMEnvironment.detect() rule: a batch job (srun inside sbatch), not an interactive allocation.
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive") and "SLURM_JOB_ID" in env:
        array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{array}_{task}" if array and task else f"slurm-{env['SLURM_JOB_ID']}"
    rdzv = env.get("TORCHELASTIC_RUN_ID")
    if rdzv and rdzv != "none":
        return f"torchrun-{rdzv}"
    return None


def _world_size(env: Mapping[str, str]) -> int:
    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        if env.get(key, "").isdigit():
            return int(env[key])
    return 1


def resolve_run_dir(cfg: RunConfig, resume: bool, env: Mapping[str, str] | None = None,
                    now: datetime.datetime | None = None) -> Path:
    """The run folder (absolute; not created). See the module docstring for the naming rules."""
    env = os.environ if env is None else env
    inherited = env.get(RUN_DIR_VARIABLE)
    if inherited and int(env.get("LOCAL_RANK", env.get("RANK", "0")) or 0) > 0:
        return Path(inherited)  # a DDP process spawned by rank 0: use its folder
    root = Path(cfg.root).expanduser().absolute()
    if cfg.name:
        if not re.fullmatch(r"[\w.+-]+", cfg.name):
            raise ValueError(f"run.name={cfg.name!r}: use letters, digits and . _ + - only (it is a folder name)")
        return root / cfg.name
    launched = _launcher_name(env)
    if launched:
        return root / launched
    if resume and (previous := newest_run(root)) is not None:
        return previous
    if _world_size(env) > 1:
        raise ValueError("several processes must write to one run folder: pass --run.name NAME (or torchrun "
                         "--rdzv-id ID) so that every rank chooses the same one")
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder, n = root / stamp, 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{n}"
    return folder


def substitute(value, run_dir: Path):
    """`value` with every ``{run_dir}`` in its strings (nested in dicts / lists / namespaces) replaced."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, str(run_dir))
    if isinstance(value, list):
        return [substitute(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, run_dir) for k, v in value.items()}
    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
        for key, item in vars(value).items():
            setattr(value, key, substitute(item, run_dir))
        return value
    return value


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run folder: the one kept in RUN_DIR/wandb_id, or a new one (see `keep_wandb_run_id`)."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file() and (run_id := path.read_text().strip()):
        return run_id
    return secrets.token_hex(4)  # W&B ids: lower-case letters and digits


def keep_wandb_run_id(run_dir: Path, run_id: str) -> None:
    """Write RUN_DIR/wandb_id (atomically) unless it exists: call once the run has started (rank 0)."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)


def newest_checkpoint(candidates: Iterable[Path]) -> Path | None:
    """The most recently written of `candidates` that exist (last.ckpt, hpc_ckpt_N.ckpt, ...; a file, or a sharded
    checkpoint folder of the FSDP2 strategy)."""
    existing = [Path(c) for c in candidates if c and (Path(c).is_file() or is_sharded(c))]
    return max(existing, key=lambda p: p.stat().st_mtime_ns, default=None)


def resume_candidates(root_dir: Path, checkpoint_dirs: Iterable[Path]) -> list[Path]:
    """Checkpoints `--ckpt_path last` chooses from: every ``last*.ckpt`` of the checkpoint folders, and the SLURM
    preemption checkpoints ``hpc_ckpt_N.ckpt`` Lightning writes to ``trainer.default_root_dir``."""
    found = list(root_dir.glob("hpc_ckpt_*.ckpt")) if root_dir.is_dir() else []
    for folder in checkpoint_dirs:
        restore_interrupted(folder)  # a sharded checkpoint whose write was killed between its two renames
        found += list(Path(folder).glob("last*.ckpt")) if Path(folder).is_dir() else []
    return found
