"""The LightningModule: it learns, its EMA is the reference's, its randomness is reproducible, checkpoints are plain."""

import math
import random

import lightning as L
import pytest
import torch
from support.helpers import TINY_MODEL, FixedBatches, LossRecorder, loader, tiny_module, trainer

from magnet_lightning.models.conditioning import TextDropout
from magnet_lightning.training.ema import bias_corrected_ema
from magnet_lightning.training.optim import OptimConfig, lr_factor


def test_overfits_a_single_batch(tmp_path):
    torch.manual_seed(0)
    module = tiny_module(model={**TINY_MODEL, "dim": 64})
    rec = LossRecorder()
    trainer(tmp_path, 400, callbacks=[rec]).fit(module, loader(FixedBatches(400)))
    first, last = sum(rec.losses[:10]) / 10, sum(rec.losses[-20:]) / 20
    assert last < 0.1 * first, (first, last)


def test_validation_is_deterministic_and_covers_every_stage(tmp_path):
    module = tiny_module()
    t = trainer(tmp_path, 1)
    a = t.validate(module, loader(FixedBatches(3, vary=True)), verbose=False)[0]
    b = t.validate(module, loader(FixedBatches(3, vary=True)), verbose=False)[0]
    assert a == b
    assert {f"val/loss_stage{k}" for k in range(4)} <= set(a)
    assert a["val/loss"] == pytest.approx(sum(a[f"val/loss_stage{k}"] for k in range(4)) / 4, rel=1e-5)


def test_training_randomness_is_a_function_of_the_step(tmp_path):
    losses = []
    for _ in range(2):
        torch.manual_seed(123)
        module = tiny_module()
        torch.manual_seed(999 + len(losses))  # the global RNG must not matter
        rec = LossRecorder()
        trainer(tmp_path, 5, callbacks=[rec]).fit(module, loader(FixedBatches(5, vary=True)))
        losses.append(rec.losses)
    assert losses[0] == losses[1]


def test_bias_corrected_ema_matches_reference_recursion():
    decay, avg_fn = 0.9, bias_corrected_ema(0.9)
    values = [torch.tensor([float(v)]) for v in (3.0, -1.0, 4.0, 1.0, 5.0)]
    count, expected = 0.0, torch.zeros(1)
    average = values[0].clone()
    for n, v in enumerate(values):
        count = count * decay + 1
        expected = expected * (1 - 1 / count) + v / count
        if n > 0:
            average = avg_fn(average, v, torch.tensor(n))
    assert torch.allclose(average, expected)


def test_ema_is_used_for_validation_and_exported(tmp_path):
    class Snapshots(L.Callback):
        weights = {}

        def on_train_batch_end(self, trainer, module, *args):
            self.weights[trainer.global_step] = module.model.emb.detach().clone()

    module = tiny_module(ema_every_n_steps=2, ema_decay=0.5)
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5, save_top_k=-1)
    t = L.Trainer(default_root_dir=tmp_path, max_steps=5, accelerator="cpu", logger=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=1, val_check_interval=5, callbacks=[saver, Snapshots()])
    t.fit(module, loader(FixedBatches(5, vary=True)), loader(FixedBatches(1)))
    (path,) = tmp_path.glob("*.ckpt")
    ckpt = torch.load(path, weights_only=True)  # plain hyper-parameters only
    live = ckpt["current_model_state"]["model.emb"]
    exported = ckpt["state_dict"]["model.emb"]
    assert torch.equal(live, Snapshots.weights[5])
    # Updates after steps 2 and 4, decay 0.5: count 1 then 1.5, so EMA = w2 + (w4 - w2) / 1.5.
    w2, w4 = Snapshots.weights[2], Snapshots.weights[4]
    assert torch.allclose(exported, w2 + (w4 - w2) / 1.5, atol=1e-6)
    assert not torch.allclose(exported, live)
    assert ckpt["hyper_parameters"]["model"]["dim"] == 32
    assert torch.equal(module.model.emb, exported)  # after fit the module holds the averaged weights


def test_lr_schedule_warmup_then_cosine():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg, 110) for s in range(120)]
    assert factors[0] < factors[5] < factors[9] < 1.0
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55)
    assert factors[110] == pytest.approx(0.1) and factors[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_text_dropout_per_batch_and_per_sample():
    texts = [f"w{i} x{i} y{i}" for i in range(8)]
    drop_all = TextDropout(cfg_dropout=1.0, word_dropout=0.0)
    assert drop_all(texts, random.Random(0)) == [None] * 8
    keep = TextDropout(cfg_dropout=0.0, word_dropout=0.0)
    assert keep(texts, random.Random(0)) == texts
    rng = random.Random(1)
    batches = [TextDropout(cfg_dropout=0.3)(texts, rng) for _ in range(400)]
    dropped = [b for b in batches if b[0] is None]
    assert all(all(t is None for t in b) for b in dropped)  # one draw per micro-batch
    assert 0.25 < len(dropped) / 400 < 0.35
    words = [w for b in batches if b[0] is not None for t in b for w in t.split()]
    assert 0.65 < len(words) / (3 * 8 * (400 - len(dropped))) < 0.75
    per_sample = TextDropout(cfg_dropout=0.5, word_dropout=0.0, per_sample=True)(texts * 50, random.Random(2))
    assert 0.4 < sum(t is None for t in per_sample) / 400 < 0.6


def test_text_encoder_width_must_match(tmp_path):
    module = tiny_module(model=dict(dim=32, num_heads=4, num_layers=1, ffn_dim=64, codebook_size=16, text_dim=48))
    with pytest.raises(ValueError, match="text_dim"):
        _ = module.text_encoder


def test_init_from_checkpoint_and_size_mismatch(tmp_path):
    source = tiny_module()
    t = trainer(tmp_path, 1)
    t.fit(source, loader(FixedBatches(1)))
    t.save_checkpoint(tmp_path / "a.ckpt")
    target = tiny_module(init_from=str(tmp_path / "a.ckpt"))
    assert torch.equal(target.model.heads, source.model.heads)
    with pytest.raises(ValueError, match="differs"):
        tiny_module(model=dict(dim=32, num_heads=4, num_layers=1, ffn_dim=64, codebook_size=16, text_dim=32),
                    init_from=str(tmp_path / "a.ckpt"))


def test_bf16_mixed_precision_steps(tmp_path):
    module = tiny_module()
    rec = LossRecorder()
    trainer(tmp_path, 3, callbacks=[rec], precision="bf16-mixed").fit(module, loader(FixedBatches(3, vary=True)))
    assert len(rec.losses) == 3 and all(math.isfinite(v) for v in rec.losses)
    assert module.model.emb.dtype == torch.float32  # master weights stay float32


def test_per_stage_losses_in_the_logged_history_are_fresh(tmp_path, monkeypatch):
    """Read the CSV history: at each log step exactly the stages drawn in that window appear, each with the mean
    loss of its micro-batches in the window, and no key repeats a value from an earlier window."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from magnet_lightning.training import families

    drawn: list[int] = []  # the stage of each micro-batch
    real_draw = families.draw_stages

    def recording_draw(*args, **kwargs):
        stages = real_draw(*args, **kwargs)
        drawn.append(int(stages[0]))
        return stages

    monkeypatch.setattr(families, "draw_stages", recording_draw)
    module = tiny_module()
    rec = LossRecorder()
    steps, every = 12, 3
    t = L.Trainer(default_root_dir=tmp_path, max_steps=steps, accelerator="cpu", log_every_n_steps=every,
                  logger=CSVLogger(tmp_path, name="csv"), enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, callbacks=[rec])
    t.fit(module, loader(FixedBatches(steps, vary=True)))
    with open(next(tmp_path.glob("csv/version_0/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    logged: dict[int, dict[str, float]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("train/loss_stage") and value:
                logged.setdefault(int(row["step"]), {})[key] = float(value)
    assert len(drawn) == len(rec.losses) == steps
    assert len(set(drawn)) > 1  # the test needs several stages
    expected: dict[int, dict[str, float]] = {}
    for window in range(steps // every):
        picks = range(window * every, (window + 1) * every)
        per_stage: dict[str, list[float]] = {}
        for i in picks:
            per_stage.setdefault(f"train/loss_stage{drawn[i]}", []).append(rec.losses[i])
        expected[(window + 1) * every - 1] = {k: sum(v) / len(v) for k, v in per_stage.items()}
    assert set(logged) == set(expected)  # Lightning's log steps (optimizer step N is logged as N - 1)
    for step, values in expected.items():
        assert set(logged[step]) == set(values), step  # only the stages drawn in the window
        for key, value in values.items():
            assert logged[step][key] == pytest.approx(value, rel=1e-5), (step, key)
