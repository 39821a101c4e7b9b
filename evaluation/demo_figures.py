#!/usr/bin/env python
"""Run the CPU demo as the README says and write the figures the docs quote to docs/demo_figures.json.

    python evaluation/demo_figures.py                       # three runs in a new folder, then the file
    python evaluation/demo_figures.py --side-by-side        # the reruns beside the fresh run (less wall time)

Three runs of ``python recipes/train_music.py`` in one new, empty folder: ``fresh`` (builds the demo corpus),
``existing`` (finds it), ``one_worker`` (``--data.num_workers 1``). Their logged values (each run folder's
``metrics.jsonl``) must be identical: the script says where they differ and writes nothing. The file holds the
val/loss first and last (steps, number of validations), the last eval metrics, each run's wall time with the load
average around it, the wall-time range, the machine, the git commit and the SHA-256 of the demo config (the docs test,
tests/docs/test_demo_figures.py, checks that README.md and recipes/README.md quote these figures and that the config is
the one measured).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a fresh clone

from magnet_lightning.callbacks.metrics_trail import TRAIL_FILE, first_difference, read_trail
from magnet_lightning.cli.run_record import git_state, hardware

CONFIG = ROOT / "recipes" / "configs" / "demo_music.yaml"
RUNS = {"fresh": [], "existing": [], "one_worker": ["--data.num_workers", "1"]}


def start(name: str, workdir: Path) -> tuple[subprocess.Popen, float, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(workdir / f"{name}.log", "w")
    cmd = [sys.executable, str(ROOT / "recipes" / "train_music.py"), "--run.name", name, *RUNS[name]]
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT), time.time(), \
        os.getloadavg()[0]


def finish(name: str, job: tuple[subprocess.Popen, float, float]) -> dict:
    proc, began, load_before = job
    if proc.wait() != 0:
        raise SystemExit(f"the {name} run failed (exit {proc.returncode}): see its log")
    return {"wall_seconds": round(time.time() - began, 1),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}


def figures(run_dir: Path) -> dict:
    """val/loss first/last and the last eval metrics of one run folder's trail."""
    trail = read_trail(run_dir / TRAIL_FILE)
    val = [(step, values["val/loss"]) for step, values in sorted(trail.items()) if "val/loss" in values]
    evals = {k: v for step, values in sorted(trail.items()) for k, v in values.items() if k.startswith("eval/")}
    return {"val_loss": {"first": round(val[0][1], 4), "first_step": val[0][0] + 1, "last": round(val[-1][1], 4),
                         "last_step": val[-1][0] + 1, "validations": len(val)},
            "eval": {k: round(v, 4) for k, v in sorted(evals.items())}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "demo_figures.json"))
    parser.add_argument("--workdir", default=None, help="an empty folder for the runs (default: a new temp folder)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="start the two reruns as soon as the fresh run has built the corpus, beside it")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="demo-figures-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):
        raise SystemExit(f"{workdir} is not empty: the first run must build the demo corpus")
    print(f"runs in {workdir}", flush=True)
    if args.side_by_side:  # the reruns start as soon as the fresh run has built the corpus
        fresh = start("fresh", workdir)
        while not (workdir / "outputs" / "demo" / "corpus" / "ready.json").is_file() and fresh[0].poll() is None:
            time.sleep(5)
        jobs = {name: start(name, workdir) for name in ("existing", "one_worker")}
        timings = {"fresh": finish("fresh", fresh), **{name: finish(name, job) for name, job in jobs.items()}}
    else:
        timings = {"fresh": finish("fresh", start("fresh", workdir))}
        for name in ("existing", "one_worker"):
            timings[name] = finish(name, start(name, workdir))
    runs = workdir / "outputs" / "demo" / "runs"
    reference = read_trail(runs / "fresh" / TRAIL_FILE)
    for name in ("existing", "one_worker"):
        difference = first_difference(reference, read_trail(runs / name / TRAIL_FILE))
        if difference:
            raise SystemExit(f"the {name} run differs from the fresh one: {difference}; nothing written")
    walls = [t["wall_seconds"] for t in timings.values()]
    loads = [x for t in timings.values() for x in t["load_average"]]
    result = {
        "command": "python recipes/train_music.py", "config_sha256": hashlib.sha256(CONFIG.read_bytes()).hexdigest(),
        **figures(runs / "fresh"),
        "identical_runs": list(timings),
        "runs": timings, "side_by_side": args.side_by_side,
        "wall_minutes": [round(min(walls) / 60, 1), round(max(walls) / 60, 1)],
        "load_average": [min(loads), max(loads)],
        "git": {k: v for k, v in git_state().items() if k != "changed"}, "hardware": hardware(),
    }
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps({k: result[k] for k in ("val_loss", "eval", "wall_minutes", "load_average")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
