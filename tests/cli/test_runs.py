"""Run folders: naming (SLURM, torchrun, resume, start time), the W&B id kept in the folder, and `--ckpt_path last`
choosing the newest of last.ckpt and SLURM's hpc_ckpt_N.ckpt; end to end through the recipe with a SLURM requeue."""

from __future__ import annotations

import datetime
import os
import shutil
import sys
from pathlib import Path

import pytest
from support.paths import CONFIGS

from magnet_lightning.cli.runs import (
    RunConfig,
    keep_wandb_run_id,
    newest_checkpoint,
    resolve_run_dir,
    resume_candidates,
    substitute,
    wandb_run_id,
)

NOW = datetime.datetime(2026, 1, 31, 14, 25, 1)
SLURM = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "magnet", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
         "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


def _touch(path: Path, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    t = 1_700_000_000 - age
    os.utime(path, (t, t))
    return path


def test_run_names(tmp_path):
    cfg = RunConfig(root=str(tmp_path))
    assert resolve_run_dir(cfg, False, {}, NOW) == tmp_path / "20260131-142501"
    (tmp_path / "20260131-142501").mkdir()
    assert resolve_run_dir(cfg, False, {}, NOW) == tmp_path / "20260131-142501-2"  # never an existing folder
    assert resolve_run_dir(RunConfig(str(tmp_path), "mine"), True, SLURM, NOW) == tmp_path / "mine"
    assert resolve_run_dir(cfg, False, SLURM, NOW) == tmp_path / "slurm-4242"  # the same after a requeue
    array = {**SLURM, "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3"}
    assert resolve_run_dir(cfg, False, array, NOW) == tmp_path / "slurm-77_3"
    assert resolve_run_dir(cfg, False, {"TORCHELASTIC_RUN_ID": "exp1", "WORLD_SIZE": "8"}, NOW) == \
        tmp_path / "torchrun-exp1"
    with pytest.raises(ValueError, match="run.name"):  # 8 processes, no shared name: they would disagree
        resolve_run_dir(cfg, False, {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "8"}, NOW)
    spawned = {"MAGNET_RUN_DIR": str(tmp_path / "chosen"), "LOCAL_RANK": "1"}  # a DDP process Lightning started
    assert resolve_run_dir(cfg, False, spawned, NOW) == tmp_path / "chosen"
    assert resolve_run_dir(cfg, False, {**spawned, "LOCAL_RANK": "0"}, NOW) == tmp_path / "20260131-142501-2"
    with pytest.raises(ValueError, match="folder name"):
        resolve_run_dir(RunConfig(str(tmp_path), "../x"), False, {}, NOW)


def test_resume_picks_the_run_with_the_newest_checkpoint(tmp_path):
    cfg = RunConfig(root=str(tmp_path))
    _touch(tmp_path / "a" / "checkpoints" / "last.ckpt", age=100)
    _touch(tmp_path / "b" / "hpc_ckpt_1.ckpt", age=10)
    (tmp_path / "c").mkdir()  # newer folder, no checkpoint
    assert resolve_run_dir(cfg, True, {}, NOW) == tmp_path / "b"
    assert resolve_run_dir(cfg, False, {}, NOW) == tmp_path / "20260131-142501"  # not resuming: a new run


def test_newest_of_last_and_preemption_checkpoints(tmp_path):
    last = _touch(tmp_path / "checkpoints" / "last.ckpt", age=50)
    hpc = _touch(tmp_path / "hpc_ckpt_2.ckpt", age=5)
    _touch(tmp_path / "hpc_ckpt_1.ckpt", age=500)
    _touch(tmp_path / "checkpoints" / "step=10.ckpt", age=0)  # not a resume point
    candidates = resume_candidates(tmp_path, [tmp_path / "checkpoints"])
    assert newest_checkpoint(candidates) == hpc
    os.utime(last, None)  # last.ckpt written after the preemption checkpoint
    assert newest_checkpoint(candidates) == last
    assert newest_checkpoint([]) is None


def test_wandb_id_is_kept_in_the_run_folder(tmp_path):
    first = wandb_run_id(tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written before the run starts
    keep_wandb_run_id(tmp_path / "run", first)
    assert (tmp_path / "run" / "wandb_id").read_text().strip() == first
    assert wandb_run_id(tmp_path / "run") == first
    keep_wandb_run_id(tmp_path / "run", "other")  # an existing id is never replaced
    assert wandb_run_id(tmp_path / "run") == first and wandb_run_id(tmp_path / "new") != first


def test_placeholder_substitution():
    from jsonargparse import Namespace

    value = Namespace(a="{run_dir}/ckpt", b=[Namespace(c="{run_dir}"), 3], d={"e": "x{step}"})
    out = substitute(value, Path("/r"))
    assert out.a == "/r/ckpt" and out.b[0].c == "/r" and out.b[1] == 3 and out.d == {"e": "x{step}"}


# ------------------------------------------------------------------------------------------------ through the recipe
@pytest.fixture
def tiny_recipe(tmp_path, monkeypatch):
    """argv of the demo recipe shrunk to a tiny model and corpus, logging to an offline W&B run and a CSV file."""
    import yaml

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    override = {
        "run": {"root": str(tmp_path / "runs")},
        "demo": {"root": str(tmp_path / "corpus"), "num_train": 2, "num_val": 1, "track_seconds": 1.2,
                 "fit_tracks": 2},
        "generate_after_fit": 0,
        "trainer": {
            "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
            "limit_val_batches": 0,
            "logger": [{"class_path": "lightning.pytorch.loggers.WandbLogger",
                        "init_args": {"project": "t", "save_dir": "{run_dir}", "offline": True}},
                       {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "{run_dir}"}}],
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": "{run_dir}/checkpoints", "filename": "{step}",
                                         "save_last": True, "save_top_k": -1, "every_n_train_steps": 1}}],
        },
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "text_dim": 32},
                  "text_encoder": "random:tiny", "ema_every_n_steps": 0,
                  "optimizer": {"warmup_steps": 1, "total_steps": 8}},
        "data": {"batch_size": 2, "segment_duration": 1.0, "batches_per_epoch": 4, "num_workers": 0},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return ["fit", "--config", str(CONFIGS / "demo_music.yaml"),
            "--config", str(path)]


def _train_losses(run_dir: Path) -> list[str]:
    import csv

    rows = []
    for metrics in sorted(run_dir.glob("*/version_*/metrics.csv")):
        with open(metrics) as f:
            rows += [r["step"] for r in csv.DictReader(f) if r.get("train/loss")]
    return rows


def test_requeued_slurm_job_resumes_from_the_preemption_checkpoint_and_the_same_wandb_run(tiny_recipe, monkeypatch,
                                                                                           tmp_path):
    from magnet_lightning.cli.train import main

    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    first = main("demo_music.yaml", [*tiny_recipe, "--trainer.max_steps", "2", "--ckpt_path", "last"])
    run_dir = tmp_path / "runs" / "slurm-4242"
    assert first.run_dir == run_dir and first.trainer.global_step == 2
    assert Path(first.trainer.default_root_dir) == run_dir
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    first.trainer.loggers[0].experiment.finish()  # the job's process ends here
    # Pretend the job was preempted after step 2: Lightning wrote hpc_ckpt_1.ckpt, newer than a last.ckpt of step 1.
    checkpoints = run_dir / "checkpoints"
    shutil.copy(checkpoints / "step=2.ckpt", run_dir / "hpc_ckpt_1.ckpt")
    shutil.copy(checkpoints / "step=1.ckpt", checkpoints / "last.ckpt")
    os.utime(checkpoints / "last.ckpt", (1_700_000_000, 1_700_000_000))
    requeued = main("demo_music.yaml", [*tiny_recipe, "--trainer.max_steps", "3", "--ckpt_path", "last"])
    assert requeued.run_dir == run_dir and requeued.trainer.global_step == 3
    assert _train_losses(run_dir) == ["0", "1", "2"]  # one more step: resumed at 2, not at 1 (last.ckpt)
    offline_runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    requeued.trainer.loggers[0].experiment.finish()
    assert len(offline_runs) == 2 and all(name.endswith(f"-{wandb_id}") for name in offline_runs)
