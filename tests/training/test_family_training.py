"""The autoregressive and Hybrid-MAGNeT families through the one LightningModule: they learn (overfit one batch),
log their own keys, resume exactly, checkpoints rebuild their model for generation, and fine-tuning refuses a
checkpoint of another family (2-process DDP of every family: test_ddp_training.py)."""

import lightning as L
import pytest
import torch
from support.helpers import TINY_MODEL, FixedBatches, LossRecorder, loader, tiny_module, trainer

from magnet_lightning.checkpoint.pretrained import load_pretrained

FAMILIES = ["musicgen", "hybrid"]


def _module(family, **kw):
    return tiny_module(family=family, masking={"per_sample_stage": family == "hybrid"}, **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_overfits_a_single_batch(tmp_path, family):
    torch.manual_seed(0)
    module = _module(family, model={**TINY_MODEL, "dim": 64})
    rec = LossRecorder()
    trainer(tmp_path, 300, callbacks=[rec]).fit(module, loader(FixedBatches(300)))
    first, last = sum(rec.losses[:10]) / 10, sum(rec.losses[-20:]) / 20
    assert last < 0.15 * first, (first, last)


@pytest.mark.parametrize("family,keys", [("musicgen", {f"val/loss_codebook{k}" for k in range(4)}),
                                         ("hybrid", {"val/loss_ar", "val/loss_nar"})])
def test_family_validation_keys_and_determinism(tmp_path, family, keys):
    module = _module(family)
    t = trainer(tmp_path, 1)
    a = t.validate(module, loader(FixedBatches(3, vary=True)), verbose=False)[0]
    b = t.validate(module, loader(FixedBatches(3, vary=True)), verbose=False)[0]
    assert a == b and keys | {"val/loss", "val/ppl"} <= set(a)
    if family == "musicgen":  # the loss is the mean of the per-codebook means
        assert a["val/loss"] == pytest.approx(sum(a[k] for k in keys) / 4, rel=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_resumes_exactly_and_checkpoint_generates(tmp_path, family):
    def fit(max_steps, ckpt_path=None):
        L.seed_everything(0)
        module = _module(family, ema_every_n_steps=2, cfg_dropout=0.3)
        rec = LossRecorder()
        ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_last=True,
                                                   save_top_k=-1, filename="{step}")
        t = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                      callbacks=[ckpt, rec], default_root_dir=tmp_path)
        t.fit(module, loader(FixedBatches(3, vary=True)), ckpt_path=ckpt_path)  # 3 steps an epoch: a boundary
        return module, rec.losses

    full, full_losses = fit(6)
    resumed, resumed_losses = fit(6, ckpt_path=str(tmp_path / "ckpt" / "step=3.ckpt"))
    assert resumed_losses == pytest.approx(full_losses[3:], rel=1e-6)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)
    pre = load_pretrained(tmp_path / "ckpt" / "last.ckpt")
    assert pre.model.family == family and pre.model.pattern.delays == (0, 1, 2, 3)
    from magnet_lightning.generation.generator import MagnetGenerator

    gen = MagnetGenerator(pre.model, full.text_encoder, None, frame_rate=50.0, segment_duration=0.3,
                          decoding_defaults=pre.decoding | ({"prompt_seconds": 0.1} if family == "hybrid" else {}))
    config = gen.decoding_config(0.3) if family == "musicgen" else gen.decoding_config(0.3, decoding_steps=[2, 1, 1, 1])
    tokens = gen.generate(["calm piano"], duration=0.3, decoding=config, decode_audio=False, seed=0).tokens
    assert tokens.shape == (1, 4, 15) and ((tokens >= 0) & (tokens < 16)).all()


def test_fine_tuning_refuses_another_family(tmp_path):
    path = tmp_path / "ar.ckpt"
    module = _module("musicgen")
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    assert load_pretrained(path).model.family == "musicgen"
    with pytest.raises(ValueError, match="musicgen model, this run trains the magnet family"):
        tiny_module(init_from=str(path))
    with pytest.raises(ValueError, match="delays"):
        tiny_module(delays=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="family="):
        tiny_module(family="diffusion")
