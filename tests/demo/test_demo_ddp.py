"""The demo recipe end to end in two CPU processes (gloo DDP): corpus build (shrunk), global batch kept by gradient
accumulation, training, validation, an atomic `last` checkpoint at the right step, W&B offline run and CSV log; its
`--reproduce` rerun (corpus found) identical."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from support.paths import ROOT

STEPS = 3


def _override(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    cfg = {
        "demo": {"root": str(tmp_path / "corpus"), "num_train": 4, "num_val": 2, "track_seconds": 2.0,
                 "fit_tracks": 4},
        "generate_after_fit": 0,
        "global_batch_size": 8,
        "trainer": {
            "devices": 2, "strategy": "ddp", "max_steps": STEPS, "log_every_n_steps": 1, "enable_progress_bar": False,
            "logger": [
                {"class_path": "lightning.pytorch.loggers.WandbLogger",
                 "init_args": {"project": "test", "name": "ddp", "save_dir": str(run)}},
                {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run)}},
            ],
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(run / "checkpoints"), "save_last": True, "save_top_k": 0,
                               "every_n_train_steps": STEPS}},
                {"class_path": "magnet_lightning.callbacks.monitors.GradNormMonitor"},
            ],
        },
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "text_dim": 32},
                  "text_encoder": "random:tiny", "optimizer": {"warmup_steps": 1}},
        "data": {"batch_size": 2, "segment_duration": 1.0, "batches_per_epoch": 4},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_demo_recipe_two_process_ddp(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "recipes" / "train_music.py"), "fit",
           "--config", str(ROOT / "recipes" / "configs" / "demo_music.yaml"), "--config", str(_override(tmp_path))]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "2 per device × 2 devices × 2 accumulation = global batch 8" in out

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    assert {"current_model_state", "optimizer_states", "lr_schedulers"} <= set(ckpt)  # EMA + live weights
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]  # no temp files left behind

    with open(next((tmp_path / "run").glob("*/version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("val/loss") for r in rows) and any(r.get("train/grad_norm") for r in rows)
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (tmp_path / "corpus" / "ready.json").is_file()

    # The rerun (corpus found this time) logs the same values, bit for bit.
    [run_dir] = (tmp_path / "outputs" / "demo" / "runs").iterdir()
    again = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_music.py"), "--reproduce", str(run_dir)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420, check=False)
    assert again.returncode == 0 and "reproduce: identical over" in again.stdout, again.stdout[-3000:] + \
        again.stderr[-3000:]
