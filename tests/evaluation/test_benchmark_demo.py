"""The CPU demo of the benchmark protocol runs as the README documents it (in a temporary folder, fewer clips)."""
import json
import os
import subprocess
import sys

import pytest
from support.paths import ROOT


@pytest.mark.slow
def test_benchmark_demo_runs_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "evaluation/benchmark_demo.py", "--root", str(tmp_path / "demo"), "--corpus",
               str(tmp_path / "corpus"), "--runs", str(tmp_path / "runs"), "--clips", "2", "--seconds", "2",
               "--bootstrap", "10"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["n"] == 2 and report["benchmark"] == "musiccaps"
    assert {"fad", "kad", "fad_inf", "kl", "clap"} <= set(report["metrics"])
    assert set(report["random_weights"]["embedders"]) >= {"passt", "clap"}  # named, loudly
    assert "RANDOM-WEIGHT PASST EMBEDDER" in proc.stderr and "(RANDOM WEIGHTS)" in proc.stdout
    assert "s per clip" in proc.stdout
