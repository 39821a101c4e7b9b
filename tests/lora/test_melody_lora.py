"""Fine-tuning a text-only base into a melody model with LoRA (recipes/configs/finetune_melody_magnet_small.yaml):
the new projection starts at zero (the adapted model first computes exactly what its base does), it trains with the
adapters while the base stays bit-identical, and the run's checkpoint, its adapter folder and the merged export all
give the base the melody conditioning back (same greedy tokens with a melody), for MAGNeT and Hybrid-MAGNeT."""

from __future__ import annotations

import json

import pytest
import torch
from support.helpers import TINY_MODEL, loader, save_base, tiny_module
from support.melody_files import TINY_MELODY, MelodyBatches, chroma_classes

from magnet_lightning.cli.export import main as export_main
from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.lora.files import ADAPTER_CONFIG
from magnet_lightning.models.melody import ChromaInput

LORA = dict(rank=4, alpha=8.0, dropout=0.0, extra_trainable=["chroma_proj"])
MELODY_MODEL = {**TINY_MODEL, "chroma_bins": 12, "chroma_fuse": "frames"}


def _fit(module, root, steps):
    import lightning as L

    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=steps)
    L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[saver], default_root_dir=root, limit_val_batches=0).fit(module, loader(MelodyBatches(steps)))
    return root / f"step={steps}.ckpt"


def _melody_module(family, base, **kw):
    masking = {"per_sample_stage": family == "hybrid"}
    return tiny_module(family=family, model=MELODY_MODEL, melody=TINY_MELODY, init_from=str(base), masking=masking,
                       **kw)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", ["magnet", "hybrid"])
def test_lora_adds_melody_to_a_text_only_base(tmp_path, family):
    base = save_base(tiny_module(family=family, decoding={"decoding_steps": [2, 1, 1, 1]}), tmp_path / "base.ckpt")
    module = _melody_module(family, base, lora=LORA)
    codes = torch.randint(0, 16, (2, 4, 12))
    states, mask = module.encode_text(["calm piano", "drums"])
    chroma = ChromaInput.of(torch.nn.functional.one_hot(chroma_classes(2, 12, torch.Generator()), 12).float())
    plain = tiny_module(family=family, init_from=str(base)).model.eval()
    with torch.no_grad():  # a zero projection and zero-B adapters: the base's outputs, melody or not
        memory = module.model.eval().prepare_text(states, mask, chroma)
        assert torch.equal(memory.frame_inputs, torch.zeros_like(memory.frame_inputs))
        ours = module.model.transformer(module.model.fused_input(codes, memory), memory, lambda *a: _full(*a))
        ref = plain.transformer(plain.embed(codes), plain.prepare_text(states, mask), lambda *a: _full(*a))
    torch.testing.assert_close(ours, ref)
    frozen = {k: v.clone() for k, v in plain.state_dict().items()}
    ckpt = _fit(module.train(), tmp_path / "run", 6)
    trained = {k: v for k, v in module.model.state_dict().items() if k in frozen}
    assert all(torch.equal(trained[k], frozen[k]) for k in frozen)  # the base is untouched
    assert module.model.chroma_proj.weight.abs().sum() > 0  # the projection trained

    assert export_main([str(base), str(tmp_path / "merged"), "--adapter", str(ckpt)]) == 0
    assert export_main([str(base), str(tmp_path / "folder"), "--adapter", str(ckpt), "--adapter-only"]) == 0
    settings = json.loads((tmp_path / "folder" / ADAPTER_CONFIG).read_text())["magnet_lightning"]["base_melody"]
    assert settings["model"] == {"chroma_bins": 12, "chroma_fuse": "frames"} and settings["settings"]["stems"] == "none"
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["melody"]["n_chroma"] == 12
    melody = torch.sin(torch.arange(16000) / 15.0)[None]  # 1 s at 16 kHz (resampled to the tiny melody's 3.2 kHz)

    def tokens(ckpt_path, adapter=None):
        gen = MagnetGenerator.from_pretrained(ckpt_path, device="cpu", codec=False, adapter=adapter,
                                              text_encoder=module.text_encoder, fast=False)
        assert gen.melody_extractor is not None
        return gen.generate(["calm piano", "drums"], duration=0.3, seed=0, decode_audio=False, use_sampling=False,
                            melody=melody, melody_sample_rate=16000).tokens

    merged = tokens(tmp_path / "merged")
    assert torch.equal(tokens(base, ckpt), merged) and torch.equal(tokens(base, tmp_path / "folder"), merged)


def _full(_layer, q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_the_added_projection_must_train(tmp_path):
    base = save_base(tiny_module(), tmp_path / "base.ckpt")
    with pytest.raises(ValueError, match="add chroma_proj to model.lora.extra_trainable"):
        _melody_module("magnet", base, lora={**LORA, "extra_trainable": []})


def test_melody_recipes_build_the_release_sizes_with_melody_added(meta_models, monkeypatch):
    """The GPU recipe is MAGNeT small with melody (frames) and MusicGen-melody's chroma settings, headed by its
    launch command; the CPU demo builds (no base or data needed to parse them)."""
    import sys

    from support.paths import CONFIGS
    from support.recipes import build_recipe

    from magnet_lightning.config import MelodyConfig, model_preset

    monkeypatch.setattr(sys, "argv", ["train_music.py"])
    text = (CONFIGS / "finetune_melody_magnet_small.yaml").read_text()
    assert "python recipes/train_music.py fit --config recipes/configs/finetune_melody_magnet_small.yaml" in text
    cli = build_recipe(CONFIGS / "finetune_melody_magnet_small.yaml", "--init_from", "", "--model.lora", "null")
    assert cli.model.model_cfg == model_preset("small", text_dim=768, subcodes_context=5, chroma_bins=12,
                                               chroma_fuse="frames")
    assert cli.model.melody_cfg == MelodyConfig(duration=10.0)  # the release's chroma (htdemucs, 12, 14, argmax)
    demo = build_recipe(CONFIGS / "demo_melody.yaml", "--demo.enabled", "false", "--model.lora", "null")
    assert demo.model.model_cfg.chroma_fuse == "frames" and demo.model.melody_cfg.stems == "none"
