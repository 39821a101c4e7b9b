"""The benchmark script runs end to end on CPU (tiny setup, one run) and writes every documented key."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_tiny_writes_all_keys(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "evaluation" / "benchmark.py"), "--tiny", "--json", str(out), "--runs", "1",
           "--batches", "1", "4", "16", "--train-steps", "1", "--frames", "40"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # shared 2-core CI: no thread contention
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    for key in ("gen_latency_s_b1", "gen_latency_s_b4", "gen_latency_s_b16", "train_frames_per_s_b16"):
        assert result[key] > 0, key
    assert result["device"].startswith("cpu") and result["dtype"] == "float32"
    assert result["frames"] == 40 and result["decoding_steps"] == [20, 10, 10, 10]
