"""The LoRA demo recipe (demo_lora.yaml) shrunk to a tiny model: the "generate from this checkpoint" command it prints
runs as printed (base + --adapter, recorded in the samples' manifest); a resume keeps the base the run trained on
although a newer demo checkpoint now exists (the demo would pick that one for a new run); the run with its resume is
reproduced exactly."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from support.paths import ROOT

from magnet_lightning.cli.train import main


def _override(tmp_path: Path) -> Path:
    override = {
        "run": {"root": str(tmp_path / "lora_runs")},
        "demo": {"root": str(tmp_path / "corpus"), "num_train": 3, "num_val": 1, "track_seconds": 1.2,
                 "fit_tracks": 2},
        "generate_after_fit": 0,
        "trainer": {"max_steps": 2, "log_every_n_steps": 1, "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                "init_args": {"save_dir": "{run_dir}"}}],
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": "{run_dir}/checkpoints", "save_last": True,
                                                 "save_top_k": 0}}]},
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "text_dim": 32},
                  "text_encoder": "random:tiny", "lora": {"rank": 2, "dropout": 0.1}, "ema_every_n_steps": 1,
                  "decoding": {"decoding_steps": [2, 1, 1, 1]}, "optimizer": {"warmup_steps": 1, "total_steps": 4}},
        "data": {"batch_size": 2, "segment_duration": 1.0, "batches_per_epoch": 2},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def _fit(override: Path, *extra: str):
    return main("demo_lora.yaml", ["fit", "--config", str(ROOT / "recipes" / "configs" / "demo_lora.yaml"),
                                   "--config", str(override), "--run.name", "lora", *extra])


def _printed_commands(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("generate from this checkpoint:") + 1
    return [line.strip() for line in lines[start:] if line.startswith("  python ")]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_lora_demo_prints_a_working_command_pins_its_base_and_reproduces(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    override = _override(tmp_path)
    _fit(override)
    commands = _printed_commands(capsys.readouterr().out)
    base = tmp_path / "corpus" / "lora_base" / "random_base.ckpt"
    last = tmp_path / "lora_runs" / "lora" / "checkpoints" / "last.ckpt"
    assert commands == [shlex.join(["python", "-m", "magnet_lightning.generate", "--ckpt", str(base), "--adapter",
                                    str(last), "--text", shlex.split(commands[0])[8], "--out",
                                    str(tmp_path / "lora_runs" / "lora" / "more_samples"),
                                    "--allow-random-text-encoder"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(shlex.split(commands[0]), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = [json.loads(r) for r in (tmp_path / "lora_runs" / "lora" / "more_samples" / "manifest.jsonl")
                .read_text().splitlines()]
    assert record["adapter"] == str(last) and record["ckpt"] == str(base) and record["long_form"] is None

    # A newer demo checkpoint of the same sizes (another base): the demo would choose it for a new run ...
    newer = tmp_path / "runs" / "later" / "checkpoints" / "last.ckpt"
    newer.parent.mkdir(parents=True)
    raw = torch.load(base, weights_only=True)
    raw["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    torch.save(raw, newer)
    # ... but the resumed run keeps the base it trained on.
    resumed = _fit(override, "--ckpt_path", "last", "--trainer.max_steps", "4")
    assert resumed.trainer.global_step == 4 and resumed.model.hparams.init_from == str(base)

    again = main("demo_lora.yaml", ["--reproduce", str(tmp_path / "lora_runs" / "lora")])
    assert again.difference is None and again.steps >= 4, again.line
