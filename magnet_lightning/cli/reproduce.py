"""``magnet-train --reproduce RUN_DIR`` (= ``python recipes/train_music.py --reproduce RUN_DIR``): run a recorded run
again into a new folder beside it and compare what both logged, step by step.

From ``RUN_DIR/run_record.json`` (cli/run_record.py) each recorded invocation is replayed in order, in the folder it
was started from, with its resolved config: the first from scratch, each later one resumed from the reproduction's
own checkpoint at the step the original resumed from (the earlier invocation stops there), with the choices the
original pinned (the LoRA demo's base). Then ``metrics.jsonl`` of both folders are compared: one line says
``identical over N steps`` or names the first step and value that differ; where the code, the packages, the machine,
the thread counts or the data differ from the original's, a line says so first. Exit code 0 when identical, 1 when
not.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magnet_lightning.callbacks.metrics_trail import TRAIL_FILE, first_difference, read_trail
from magnet_lightning.cli.resume import checkpoint_step
from magnet_lightning.cli.run_record import read_record
from magnet_lightning.cli.runs import checkpoints_in
from magnet_lightning.errors import UserError


@dataclass
class Reproduction:
    original: Path
    again: Path
    difference: str | None
    """The first difference (one line), None when every logged value is equal."""
    steps: int
    """How many steps logged values (every logged step of the original)."""
    last_step: int
    values: int
    notes: list[str]

    @property
    def line(self) -> str:
        if self.difference:
            return f"reproduce: {self.difference} ({self.original} vs {self.again})"
        return (f"reproduce: identical over {self.steps} steps ({self.values} logged values equal, up to step "
                f"{self.last_step}; {self.original} vs {self.again})")


def new_folder(original: Path) -> Path:
    """A run folder beside `original` that does not exist yet: NAME-reproduce, NAME-reproduce-2, ..."""
    folder, n = original.with_name(f"{original.name}-reproduce"), 1
    while folder.exists():
        n += 1
        folder = original.with_name(f"{original.name}-reproduce-{n}")
    return folder


def _resume_point(again: Path, original: Path, recorded: str | None, step: int) -> str:
    """The reproduction's checkpoint at `step`: the file at the original's path inside the new folder, else any
    checkpoint of the new folder at that step."""
    candidates = []
    if recorded and Path(recorded).is_relative_to(original):
        candidates.append(again / Path(recorded).relative_to(original))
    candidates += sorted(checkpoints_in(again), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for path in candidates:
        if path.exists() and checkpoint_step(path) == step:
            return str(path)
    raise UserError(f"cannot replay the resume at step {step}: the reproduction in {again} wrote no checkpoint at "
                    "that step (the original's checkpoint callback saved one there; is it in the config?)")


def invocation_args(record: dict[str, Any], index: int, config_file: Path, original: Path, again: Path) -> list[str]:
    """argv of invocation `index` of `record`, replayed into the folder `again`."""
    invocations = record["invocations"]
    entry = invocations[index]
    args = [entry.get("subcommand") or "fit", "--config", str(config_file), "--run.root", str(again.parent),
            "--run.name", again.name]
    if index + 1 < len(invocations):
        args += ["--trainer.max_steps", str(invocations[index + 1]["start_step"])]
    start = int(entry.get("start_step") or 0)
    args += ["--ckpt_path", _resume_point(again, original, entry.get("ckpt_path"), start) if start else "null"]
    for key, value in (entry.get("pinned") or {}).items():
        args += [f"--{key}", str(value)]
    return args


@contextlib.contextmanager
def _in_folder(folder: str | None):
    before = os.getcwd()
    if folder and Path(folder).is_dir():
        os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _threads(count: int | None):
    """OMP_NUM_THREADS for the replayed process: the original's intra-op thread count (a matrix product split over
    another number of threads may round differently), unless the caller set it."""
    if count is None or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(count)
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def _finish_wandb(cli: Any) -> None:
    for logger in getattr(getattr(cli, "trainer", None), "loggers", []):
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


def reproduce(run_dir: str | Path, run_cli: Callable[[list[str]], Any]) -> Reproduction:
    """Replay the run recorded in `run_dir` with `run_cli(argv)` (one training command line per invocation) into a
    new folder beside it, then compare the two metric trails."""
    original = Path(run_dir).expanduser().resolve()
    record = read_record(original)
    if not record.get("invocations"):
        raise UserError(f"{original}/run_record.json records no training invocation: nothing to reproduce")
    if not (original / TRAIL_FILE).is_file():
        raise UserError(f"{original} has no {TRAIL_FILE} (the run logged nothing: its trainer.logger is false); "
                        "nothing to compare")
    again = new_folder(original)
    print(f"reproduce: replaying {len(record['invocations'])} invocation(s) of {original} into {again}", flush=True)
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        for index, entry in enumerate(record["invocations"]):
            config_file = Path(tmp) / f"invocation-{index}.yaml"
            config_file.write_text(entry["config"], encoding="utf-8")
            with _in_folder(entry.get("cwd")), _threads(entry.get("hardware", {}).get("torch_threads")):
                args = invocation_args(record, index, config_file, original, again)
                _finish_wandb(run_cli(args))  # each invocation in a new process (the training CLI's run_cli)
    return compare(original, again)


def compare(original: Path, again: Path) -> Reproduction:
    """The trails of two run folders compared, with notes on what differs in their records."""
    first = read_trail(original / TRAIL_FILE)
    second = read_trail(again / TRAIL_FILE) if (again / TRAIL_FILE).is_file() else {}
    values = sum(len(v) for v in first.values())
    notes = record_differences(read_record(original), read_record(again)) if (again / "run_record.json").is_file() \
        else []
    return Reproduction(original, again, first_difference(first, second), len(first), max(first, default=0), values,
                        notes)


def record_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per part of the records' last invocations that differs: code, packages, machine, threads, data."""
    a, b = before["invocations"][-1], after["invocations"][-1]
    notes = []
    if (a["git"].get("commit"), a["git"].get("dirty")) != (b["git"].get("commit"), b["git"].get("dirty")):
        notes.append(f"code: commit {a['git'].get('commit')} (dirty: {a['git'].get('dirty')}) then, "
                     f"{b['git'].get('commit')} (dirty: {b['git'].get('dirty')}) now")
    then, now = _versions(a["packages"]), _versions(b["packages"])
    changed = [f"{name} {then.get(name, 'absent')} -> {now.get(name, 'absent')}"
               for name in sorted(set(then) | set(now)) if then.get(name) != now.get(name)]
    if changed:
        notes.append(f"packages: {', '.join(changed[:5])}" + (f" and {len(changed) - 5} more" if len(changed) > 5
                                                              else ""))
    for key in ("cpu", "usable_cpus", "torch_threads", "torch_interop_threads", "threads_per_rank", "gpus", "cuda",
                "world_size"):
        if a["hardware"].get(key) != b["hardware"].get(key):
            notes.append(f"hardware: {key} {a['hardware'].get(key)} then, {b['hardware'].get(key)} now")
    if a.get("data") != b.get("data"):
        differing = sorted(k for k in set(a["data"]) | set(b["data"]) if a["data"].get(k) != b["data"].get(k))
        notes.append(f"data: checksums differ for {', '.join(differing)}")
    return notes


def _versions(freeze: list[str]) -> dict[str, str]:
    return dict(entry.split("==", 1) if "==" in entry else (entry, "?") for entry in freeze)


def run_in_new_process(args: list[str], script: str | None = None) -> None:
    """One training command in a fresh Python process (a replayed invocation starts as the original did: no process
    group, launcher variables or global state left by the one before), run by the recipe script `script` (default
    the one this process runs, else recipes/train_music.py), so DDP launchers re-run it for the other ranks; its
    failure stops the reproduction."""
    if not (script and script.endswith(".py") and Path(script).is_file()):
        script = str(Path(__file__).resolve().parents[2] / "recipes" / "train_music.py")
        if not Path(script).is_file():  # an installed wheel: its copy of the recipes
            script = str(Path(__file__).resolve().parents[1] / "scripts" / "recipes" / "train_music.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, script, *args], env=env, check=False)
    if done.returncode:
        raise UserError(f"the replayed command `{shlex.join(args)}` failed with exit code {done.returncode} (its "
                        "output is above)")


def report(result: Reproduction) -> int:
    """Print the notes and the verdict; the exit code (0 identical, 1 not)."""
    for note in result.notes:
        print(f"reproduce: differs from the original's record: {note}", flush=True)
    print(result.line, flush=True)
    return 1 if result.difference else 0


def reproduce_argument(args: list[str]) -> str | None:
    """RUN_DIR of ``--reproduce RUN_DIR`` / ``--reproduce=RUN_DIR`` as the only argument; None otherwise."""
    if args[:1] == ["--reproduce"]:
        if len(args) != 2:
            raise UserError("--reproduce takes one run folder and nothing else: magnet-train --reproduce RUN_DIR")
        return args[1]
    if args[:1] and args[0].startswith("--reproduce="):
        if len(args) != 1:
            raise UserError("--reproduce takes one run folder and nothing else: magnet-train --reproduce RUN_DIR")
        return args[0].split("=", 1)[1]
    return None
