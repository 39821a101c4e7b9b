"""Exact resume: N steps in one go == N/2 steps, a checkpoint, a new process-like Trainer resuming, N/2 more.

The data here is a deterministic map-style dataset and the checkpoint falls on an epoch boundary, so both runs see
identical batches; this isolates what the checkpoint must restore: weights, EMA, optimizer, LR schedule, step
counters, and the module's step-keyed mask randomness. (The TokenDataModule stream is reseeded from the restored step,
so a resumed token run is reproducible but draws a different - statistically equivalent - sequence of crops.)
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support.helpers import FixedBatches, loader, tiny_module
from support.paths import CONFIGS

from magnet_lightning.training.checkpoint_io import AtomicCheckpointIO

STEPS, ACCUMULATE, BATCHES_PER_EPOCH = 8, 2, 8  # 8 micro-batches per epoch = 4 optimizer steps per epoch


class RecordLosses(L.Callback):
    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[(trainer.global_step, batch_idx)] = float(outputs["loss"])


def _module():
    return tiny_module(optimizer={"lr": 3e-3, "warmup_steps": 2, "schedule": "cosine", "total_steps": STEPS},
                       ema_decay=0.9, ema_every_n_steps=2, cfg_dropout=0.3)


def _trainer(tmp_path, max_steps: int, recorder: RecordLosses) -> L.Trainer:
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=STEPS // 2,
                                               save_top_k=-1, save_last=True, filename="{step}")
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, accumulate_grad_batches=ACCUMULATE,
                     gradient_clip_val=1.0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, limit_val_batches=0, callbacks=[ckpt, recorder],
                     plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path)


def _fit(tmp_path, max_steps: int, ckpt_path=None):
    L.seed_everything(0)
    recorder = RecordLosses()
    module = _module()
    trainer = _trainer(tmp_path, max_steps, recorder)
    data = loader(FixedBatches(BATCHES_PER_EPOCH, vary=True))
    trainer.fit(module, train_dataloaders=data, ckpt_path=ckpt_path)
    return trainer, module, recorder


def _ema_state(trainer):
    ema = next(c for c in trainer.callbacks if type(c).__name__ == "EMA")
    return {k: v.clone() for k, v in ema._average_model.state_dict().items()}


def test_resume_matches_uninterrupted_run(tmp_path):
    full_trainer, full_module, full = _fit(tmp_path / "full", STEPS)

    _, _, first = _fit(tmp_path / "split", STEPS // 2)
    assert (tmp_path / "split" / "ckpt" / "last.ckpt").is_file()
    resumed_trainer, resumed_module, second = _fit(tmp_path / "split", STEPS, ckpt_path="last")

    assert full_trainer.global_step == resumed_trainer.global_step == STEPS
    split = {**first.losses, **second.losses}
    assert set(split) == set(full.losses)  # same (step, micro-batch) positions: nothing replayed or skipped
    for key, loss in full.losses.items():
        assert split[key] == pytest.approx(loss, rel=1e-5, abs=1e-6), key
    for (name, a), (_, b) in zip(full_module.state_dict().items(), resumed_module.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    full_ema, resumed_ema = _ema_state(full_trainer), _ema_state(resumed_trainer)
    for name in full_ema:
        torch.testing.assert_close(full_ema[name], resumed_ema[name], rtol=1e-5, atol=1e-6, msg=name)
    assert (full_trainer.lr_scheduler_configs[0].scheduler.last_epoch
            == resumed_trainer.lr_scheduler_configs[0].scheduler.last_epoch == STEPS)


def test_resume_without_restoring_optimizer_state_diverges(tmp_path):
    """The comparison above can fail: weights alone (fresh AdamW moments and schedule) give a different curve."""
    _, _, full = _fit(tmp_path / "full", STEPS)
    _fit(tmp_path / "split", STEPS // 2)
    raw = torch.load(tmp_path / "split" / "ckpt" / "last.ckpt", weights_only=True)
    module = _module()
    module.load_state_dict(raw.get("current_model_state", raw["state_dict"]))
    recorder = RecordLosses()
    trainer = _trainer(tmp_path / "fresh", STEPS // 2, recorder)
    trainer.fit(module, train_dataloaders=loader(FixedBatches(BATCHES_PER_EPOCH, vary=True)))
    later = [v for (step, _), v in sorted(full.losses.items()) if step > STEPS // 2]
    fresh = [v for _, v in sorted(recorder.losses.items())][-len(later):]
    assert any(abs(a - b) > 1e-4 for a, b in zip(later, fresh))


def test_interrupted_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """A save that dies half-way leaves the old file intact and loadable, and no partial file under its name."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save({"step": 2, "w": torch.zeros(1000)}, f)
        f.truncate(f.tell() // 2)  # half a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)

    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    io.save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


# ------------------------------------------------------------------------------------------------ through the recipe
def _recipe_fit(tmp_path, monkeypatch, ckpt_dir, log_dir, max_steps: int, resume: bool,
                extra_callbacks: tuple[str, ...] = ()) -> list[float]:
    """Run the demo recipe (tiny model, tiny corpus shared across calls) in-process; returns train/loss per step."""
    import csv
    import sys

    import yaml

    from magnet_lightning.cli.train import main

    override = {
        "demo": {"root": str(tmp_path / "corpus"), "num_train": 4, "num_val": 2, "track_seconds": 2.0,
                 "fit_tracks": 4},
        "generate_after_fit": 0,
        "trainer": {
            "max_steps": max_steps, "log_every_n_steps": 1, "enable_progress_bar": False,
            "enable_model_summary": False, "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                                       "init_args": {"save_dir": str(log_dir)}}],
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(ckpt_dir), "save_last": True, "save_top_k": 0,
                                         "every_n_train_steps": 1}},
                          *({"class_path": name} for name in extra_callbacks)],
        },
        "model": {"model": {"dim": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "text_dim": 32},
                  "text_encoder": "random:tiny", "ema_every_n_steps": 1,
                  "optimizer": {"warmup_steps": 1, "total_steps": 8}},
        "data": {"batch_size": 2, "segment_duration": 1.0, "batches_per_epoch": 4, "num_workers": 0},
    }
    path = tmp_path / f"override-{log_dir.name}.yaml"
    path.write_text(yaml.safe_dump(override))
    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    demo = CONFIGS / "demo_music.yaml"
    args = ["fit", "--config", str(demo), "--config", str(path)]
    cli = main("demo_music.yaml", args + (["--ckpt_path", "last"] if resume else []))
    assert cli.trainer.global_step == max_steps
    with open(next(log_dir.glob("*/version_*/metrics.csv"))) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in rows]


def test_recipe_resume_is_reproducible(tmp_path, monkeypatch):
    """`--ckpt_path last` through the recipe reaches the same step, and two resumes from one checkpoint continue
    identically (TokenDataModule reseeds its stream from the restored step: reproducible, though not the exact
    batches an uninterrupted run would have drawn)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    first = _recipe_fit(tmp_path, monkeypatch, tmp_path / "ck_a", tmp_path / "log_a", 2, resume=False)
    shutil.copytree(tmp_path / "ck_a", tmp_path / "ck_b")
    again_a = _recipe_fit(tmp_path, monkeypatch, tmp_path / "ck_a", tmp_path / "log_a2", 4, resume=True)
    again_b = _recipe_fit(tmp_path, monkeypatch, tmp_path / "ck_b", tmp_path / "log_b2", 4, resume=True)
    assert len(first) == 2 and len(again_a) == len(again_b) == 2  # steps 3 and 4 only: resumed, not restarted
    assert again_a == pytest.approx(again_b, rel=1e-6)
    assert torch.load(tmp_path / "ck_a" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_run_folder_naming_the_flat_cli_classes_still_resumes(tmp_path, monkeypatch):
    """Run folders written before the package was laid out by concern name the training CLI's classes as
    `magnet_lightning.cli.<Class>` in their saved config.yaml: those paths still resolve, and such a run resumes."""
    import magnet_lightning.cli as cli_package
    from magnet_lightning.callbacks.monitors import GradNormMonitor
    from magnet_lightning.training.checkpoint_io import AtomicCheckpointIO

    assert cli_package.GradNormMonitor is GradNormMonitor and cli_package.AtomicCheckpointIO is AtomicCheckpointIO
    monkeypatch.chdir(tmp_path)
    old = ("magnet_lightning.cli.GradNormMonitor",)
    first = _recipe_fit(tmp_path, monkeypatch, tmp_path / "ck", tmp_path / "log", 2, resume=False,
                        extra_callbacks=old)
    again = _recipe_fit(tmp_path, monkeypatch, tmp_path / "ck", tmp_path / "log2", 3, resume=True,
                        extra_callbacks=old)
    assert len(first) == 2 and len(again) == 1
    assert torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["global_step"] == 3
