"""``RUN_DIR/run_record.json``: what it takes to re-create a training run, one entry per invocation of the training
command on that folder (a first run, then each resume or requeue):

- ``config``: the resolved config as the parser dumps it, before the run folder is put in (``{run_dir}`` kept, so
  the same file re-runs into another folder), and ``argv``, ``cwd`` (relative paths in the config start there);
- ``ckpt_path`` / ``start_step``: the checkpoint the invocation resumed from and the optimizer step it started at;
- ``pinned``: choices made at start-up that a later start could make differently (the LoRA demo's base);
- ``seeds``: ``seed_everything``, ``model.seed``, ``data.seed``, ``demo.seed``;
- ``git``: the package checkout's commit and whether it had uncommitted changes (``dirty``, with the changed paths);
- ``packages``: every installed distribution as ``name==version`` (what ``pip freeze`` lists), and Python's version;
- ``hardware``: machine, CPU model, core counts, torch's intra-op / inter-op threads (rank 0's, and
  ``threads_per_rank``), CUDA and cuDNN versions, GPU names, world size;
- ``data``: the SHA-256 of each dataset's ``manifest.json`` and of a local codec folder's files.

Rank 0 writes it (atomically) when training starts, after any checkpoint is restored. ``magnet-train --reproduce
RUN_DIR`` (cli/reproduce.py) reads it.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch

RECORD_FILE = "run_record.json"
RECORD_FORMAT = "magnet_lightning.run_record"


def git_state(folder: Path | None = None) -> dict[str, Any]:
    """The commit of the checkout holding this package and whether it differs from it (tracked or untracked files)."""
    folder = folder or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": f"{folder} is not a git checkout (an installed package)"}
    changed = [line[3:] for line in (git("status", "--porcelain") or "").splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:50]}


def packages() -> list[str]:
    """``name==version`` of every installed distribution, sorted (pip freeze's list)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = f"{name}=={dist.version}"
    return [found[k] for k in sorted(found)]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware(trainer: L.Trainer | None = None) -> dict[str, Any]:
    """The machine and the thread counts this process computes with (call after the strategy has set them)."""
    cuda = torch.cuda.is_available()
    return {
        "machine": platform.machine(), "system": platform.platform(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_variables": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
                             if k in os.environ},
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "world_size": trainer.world_size if trainer is not None else 1,
        "accelerator": type(trainer.accelerator).__name__ if trainer is not None else None,
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_checksums(shard_specs: list[str], codec: str | None) -> dict[str, str]:
    """{what: SHA-256}: each dataset's manifest.json (a folder, or the folder of a tar path / glob), and the files
    of `codec` when it is a local folder (a fitted random codec, a downloaded one), hashed together in name order."""
    out = {}
    for spec in shard_specs:
        path = Path(os.path.expanduser(str(spec)))
        folder = path if path.is_dir() else path.parent
        manifest = path if path.name == "manifest.json" else folder / "manifest.json"
        if manifest.is_file():
            out[f"manifest:{manifest.resolve()}"] = sha256_file(manifest)
    folder = Path(os.path.expanduser(str(codec))) if codec else None
    if folder is not None and folder.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(file).encode())
        out[f"codec:{folder.resolve()}"] = digest.hexdigest()
    return out


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """The run record of `run_dir`; FileNotFoundError naming what is missing."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a run folder of this version's training "
                                "command (each run writes run_record.json when training starts)")
    return json.loads(path.read_text(encoding="utf-8"))


def append_invocation(run_dir: Path, invocation: dict[str, Any]) -> None:
    """Add one invocation to `run_dir`'s record (temp file + rename: a reader never sees half a record)."""
    path = run_dir / RECORD_FILE
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else \
        {"format": RECORD_FORMAT, "version": 1, "invocations": []}
    record["invocations"].append(invocation)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def invocation_entry(cli: Any, config: Any) -> dict[str, Any]:
    """What the training CLI knows of this invocation before fit: the config dumped before the run folder was put in,
    argv, cwd, the resumed checkpoint, pinned choices, the seeds and the data checksums (rank 0 hashes)."""
    data = config.get("data") or {}
    specs = [s for key in ("train_shards", "val_shards") for s in _as_list(data.get(key))]
    model = config.get("model") or {}
    return {
        "config": cli.recorded_config, "argv": list(sys.argv), "cwd": os.getcwd(), "subcommand": cli.subcommand,
        "ckpt_path": str(cli.resume_path) if cli.resume_path else None, "pinned": dict(cli.pinned),
        "seeds": {"seed_everything": config.get("seed_everything"), "model.seed": model.get("seed"),
                  "data.seed": data.get("seed"), "demo.seed": (config.get("demo") or {}).get("seed")},
        "data": data_checksums(specs, model.get("codec")) if cli.trainer.is_global_zero else {},
    }


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]


class RunRecorder(L.Callback):
    """Writes this invocation's entry of the run record when training starts (rank 0). The training CLI fills
    `invocation` (config, argv, seeds, data, pinned choices) before fit; the step, the machine, the threads, the
    packages and the git state are read here."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.invocation: dict[str, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        threads = rank_threads()  # a collective: every rank takes part
        if not trainer.is_global_zero or self.invocation is None:
            return
        entry = {"started": datetime.datetime.now().isoformat(timespec="seconds"), **self.invocation,
                 "start_step": int(trainer.global_step), "git": git_state(),
                 "python": sys.version.split()[0], "packages": packages(),
                 "hardware": {**hardware(trainer), "threads_per_rank": threads}}
        append_invocation(self.run_dir, entry)


def rank_threads() -> list[list[int]]:
    """[intra-op, inter-op] threads of every rank, in rank order (gathered when a process group exists). The ranks
    of one run must compute with the same count: a reduction split over another number of threads may round
    differently."""
    mine = [torch.get_num_threads(), torch.get_num_interop_threads()]
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [mine]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, mine)
    return gathered
