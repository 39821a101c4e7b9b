"""The benchmark script runs end to end on CPU (tiny setup, one run): MAGNeT and the autoregressive model side by
side, with MAGNeT rescored by the AR model and two-model generation, every documented key, and a latency-vs-throughput
PNG with every family drawn."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image
from support.paths import ROOT


def test_benchmark_tiny_writes_both_families_and_the_chart(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "evaluation" / "benchmark.py"), "--tiny", "--json", str(out), "--runs", "1",
           "--batches", "1", "2", "--train-steps", "1", "--frames", "20", "--kv-rounds", "2", "--kv-calls", "2"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # shared 2-core CI: no thread contention
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["device"].startswith("cpu") and result["cpu_threads"] == 1 and result["frames"] == 20
    assert result["magnet"]["decoding_steps"] == [20, 10, 10, 10] and result["ar"]["steps"] == 23
    assert result["ar"]["decoding"]["top_k"] == 250 and result["ar"]["decoding"]["cfg_coef"] == 3.0
    assert result["rescored"]["rescore_weight"] == 0.7 and result["two_model"]["prompt_frames"] == 6  # a third of 20
    for family in ("magnet", "ar", "rescored", "two_model"):
        entry = result[family]
        assert set(entry["latency_s"]) == set(entry["throughput_audio_s_per_s"]) == {"1", "2"}
        for batch, latency in entry["latency_s"].items():
            assert entry["throughput_audio_s_per_s"][batch] == pytest.approx(int(batch) * 0.4 / latency, rel=0.02)
    assert result["magnet"]["train_frames_per_s_b16"] > 0 and result["ar"]["train_frames_per_s_b16"] > 0
    kv = result["ar"]["kv_cache"]
    assert kv["step_s"] > 0 and kv["single_frame_forward_s"] > 0 and kv["target"] == 1.5
    assert result["b1_latency_ar_over_magnet"] > 0 and len(result["load_average_before"]) == 3
    image = Image.open(out.with_suffix(".png")).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    assert {(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)} <= colours  # the four lines


def test_benchmark_long_form_reports_compute_per_second_for_1_2_6_windows(tmp_path):
    out = tmp_path / "long.json"
    cmd = [sys.executable, str(ROOT / "evaluation" / "benchmark.py"), "--tiny", "--long-form", "--json", str(out),
           "--runs", "1", "--frames", "10", "--families", "magnet", "ar", "hybrid"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    long_form = json.loads(out.read_text())["long_form"]
    assert (long_form["window_frames"], long_form["stride_frames"], long_form["windows"]) == (10, 6, [1, 2, 6])
    for family in ("magnet", "ar", "hybrid"):  # here the families: "hybrid" is Hybrid-MAGNeT
        entry = long_form[family]
        assert [entry[n]["frames"] for n in ("1", "2", "6")] == [10, 16, 40]  # W + (n - 1) * S
        for n in ("1", "2", "6"):
            seconds = entry[n]["frames"] / 50
            assert entry[n]["compute_s_per_audio_s"] == pytest.approx(entry[n]["latency_s"] / seconds, rel=0.02)
    assert "rescored" not in long_form


def test_long_form_join_study_runs_and_reports_every_stride(tmp_path):
    out = tmp_path / "joins.json"
    cmd = [sys.executable, str(ROOT / "evaluation" / "long_form_joins.py"), "--synthetic", "--train-steps", "2",
           "--batch", "4", "--windows", "3", "--strides", "0.5", "0.9", "--out", str(out)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["window_frames"] == 60 and set(report["strides"]) == {"0.5", "0.9"}
    for fraction, entry in report["strides"].items():
        assert entry["stride_frames"] == round(float(fraction) * 60)
        assert entry["frames"] == 60 + 2 * entry["stride_frames"]
        assert entry["join_fad"] >= 0 and 0 <= entry["new_token_rate"] <= 1
