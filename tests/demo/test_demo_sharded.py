"""The sharded demo recipe end to end in two CPU processes (FSDP2 over gloo), shrunk: `strategy: fsdp2` from the
config, a sharded `last.ckpt` folder, the printed "generate from this checkpoint" commands (convert, then generate)
running as printed, `--ckpt_path last` resuming the same run folder from it, the same resume once the run is done
saying so and writing nothing, `--reproduce` replaying the run with its resume exactly, and the folder converted into
one file that generation reads."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.paths import ROOT

from magnet_lightning.training.sharded_checkpoint import consolidate, is_sharded


def _override(tmp_path: Path) -> Path:
    cfg = {
        "demo": {"root": str(tmp_path / "corpus"), "num_train": 4, "num_val": 2, "track_seconds": 2.0,
                 "fit_tracks": 4},
        "run": {"root": str(tmp_path / "runs")},
        "trainer": {"max_steps": 2, "log_every_n_steps": 1, "enable_progress_bar": False,
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                "init_args": {"save_dir": str(tmp_path / "runs")}}]},
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "text_dim": 32},
                  "text_encoder": "random:tiny", "optimizer": {"warmup_steps": 1}, "ema_every_n_steps": 1},
        "data": {"batch_size": 2, "segment_duration": 1.0, "batches_per_epoch": 2},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fit(tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "recipes" / "train_music.py"), "fit", "--config",
           str(ROOT / "recipes" / "configs" / "demo_sharded.yaml"), "--config", str(_override(tmp_path)),
           "--run.name", "sharded", *extra]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
            "PYTHONPATH": str(ROOT)}


def _printed_commands(out: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index("generate from this checkpoint:") + 1
    return [line.strip() for line in lines[start:] if line.startswith("  python ")]


@pytest.mark.slow
def test_demo_sharded_trains_resumes_and_converts(tmp_path):
    out = _fit(tmp_path)
    assert "2 per device × 2 devices × 1 accumulation = global batch 4" in out
    run = tmp_path / "runs" / "sharded"
    last = run / "checkpoints" / "last.ckpt"
    assert is_sharded(last) and consolidate(last)["global_step"] == 2
    commands = _printed_commands(out)  # convert the sharded folder, then generate: each runs as printed
    assert len(commands) == 2 and commands[0].startswith("python -m magnet_lightning.convert sharded")
    for command in commands:
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    assert len(list((run / "more_samples").glob("*.wav"))) == 1
    (run / "model.ckpt").unlink()
    shutil.rmtree(run / "more_samples")

    out = _fit(tmp_path, "--ckpt_path", "last", "--trainer.max_steps", "4")
    assert f"resuming from {last}" in out
    checkpoint = consolidate(last)
    assert checkpoint["global_step"] == 4 and "current_model_state" in checkpoint  # EMA and live weights

    files = sorted(p.relative_to(run) for p in run.rglob("*"))  # the documented resume of a finished run:
    out = _fit(tmp_path, "--ckpt_path", "last", "--trainer.max_steps", "4")  # one line, nothing written
    assert f"nothing to do: {last} is at step 4 and trainer.max_steps is 4" in out
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files

    again = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_music.py"), "--reproduce", str(run)],
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "reproduce: identical over" in again.stdout, again.stdout[-3000:] + \
        again.stderr[-3000:]

    from magnet_lightning.checkpoint.pretrained import load_pretrained
    from magnet_lightning.cli.convert import main as convert

    convert(["sharded", str(last), str(tmp_path / "model.ckpt")])
    assert load_pretrained(tmp_path / "model.ckpt").model.cfg.dim == 32
