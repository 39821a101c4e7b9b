"""`magnet-export --format audiocraft`, with audiocraft 1.3.0 itself as the client: a release file (a real released
xp.cfg, tiny sizes, float16 random weights) goes through `magnet-convert audiocraft` and back out unchanged (names,
values), `MAGNeT` / `MusicGen` / `AudioGen.get_pretrained` load the folder, and audiocraft's teacher-forced logits
(`LMModel.compute_predictions`) equal ours for every stage; a LoRA fine-tune exported merged reproduces base +
adapter in audiocraft."""

from __future__ import annotations

import os

import pytest
import torch
import yaml
from support.audiocraft_client import import_audiocraft, remove_stubs, t5_in_cache
from support.audiocraft_files import (
    codec_state_dict_bin,
    hub_cache,
    lm_best_state,
    lm_state_dict_bin,
    tiny_encodec_32khz_folder,
    tiny_xp_cfg,
)

from magnet_lightning.checkpoint.audiocraft import read_audiocraft
from magnet_lightning.checkpoint.pretrained import load_pretrained
from magnet_lightning.cli.convert import main as convert_main
from magnet_lightning.cli.export import main as export_main
from magnet_lightning.lora.adapters import LoraConfig, apply_lora, lora_state_dict
from magnet_lightning.lora.files import Adapter, BaseIdentity, base_fingerprint, write_adapter_folder

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # importing audiocraft: ~20 s under load
T5_WIDTH = {"t5-base": 768, "t5-large": 1024}


@pytest.fixture(scope="module")
def audiocraft(tmp_path_factory):
    """audiocraft.models, with a Hugging Face cache holding the tiny T5s and 32 kHz EnCodec its loaders fetch."""
    from huggingface_hub import constants

    tmp = tmp_path_factory.mktemp("audiocraft_client")
    cache = tmp / "hf"
    cache.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setenv("HF_HUB_CACHE", str(cache))
        for name, width in T5_WIDTH.items():
            t5_in_cache(cache, name, width, tmp)
        hub_cache(cache, "facebook/encodec_32khz", {"model": tiny_encodec_32khz_folder(tmp / "encodec")})
        models, stubbed = import_audiocraft()
        yield models
        remove_stubs(stubbed)


def _audiogen_cfg() -> str:
    """An AudioGen-style release config: the autoregressive LM of musicgen-small with t5-large, 16 kHz and
    audiocraft's own codec (as facebook/audiogen-medium is laid out)."""
    cfg = yaml.safe_load(tiny_xp_cfg("musicgen-small"))
    cfg.update(solver="audiogen", sample_rate=16000, compression_model_checkpoint="//reference/bd44a852/checkpoint.th")
    cfg["conditioners"]["description"]["t5"]["name"] = "t5-large"
    return yaml.safe_dump(cfg, sort_keys=False)


RELEASES = {  # name -> (config text, audiocraft class that loads it)
    "magnet-small-10secs": (lambda: tiny_xp_cfg("magnet-small-10secs"), "MAGNeT"),
    "musicgen-small": (lambda: tiny_xp_cfg("musicgen-small"), "MusicGen"),
    "audio-magnet-small": (lambda: tiny_xp_cfg("audio-magnet-small"), "MAGNeT"),
    "audiogen": (_audiogen_cfg, "AudioGen"),
}


def release(folder, name, seed=0):
    """A release folder: state_dict.bin (float16) and, for the 16 kHz models, audiocraft's codec file."""
    folder.mkdir()
    cfg = RELEASES[name][0]()
    state = lm_best_state(cfg, seed, torch.float16)
    lm_state_dict_bin(folder / "state_dict.bin", cfg, state)
    if yaml.safe_load(cfg)["sample_rate"] == 16000:
        codec_state_dict_bin(folder / "compression_state_dict.bin")
    return state, yaml.safe_load(cfg)


def inputs(text_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (2, 4, 12), generator=g)
    states = torch.randn(2, 5, text_dim, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    return codes, states, mask


@torch.no_grad()
def assert_same_logits(lm, ours, text_dim):
    """audiocraft's compute_predictions (text states through its own projection) against our forward, every stage
    (MAGNeT) or the valid positions of the delay pattern (autoregressive)."""
    codes, states, mask = inputs(text_dim)
    proj = lm.condition_provider.conditioners["description"].output_proj
    tensors = {"description": (proj(states) * mask[..., None], mask.int())}
    stages = range(4) if ours.family == "magnet" else [-1]
    for stage in stages:
        ref = lm.compute_predictions(codes, [], tensors, stage=stage)
        if stage >= 0:
            mine, valid = ours(codes, states, mask, stage), torch.ones_like(ref.mask)
        else:
            prediction = ours(codes, states, mask)
            mine, valid = prediction.logits, prediction.mask
            assert torch.equal(valid, ref.mask)
        error = (mine[valid] - ref.logits[valid]).norm() / ref.logits[valid].norm()
        assert error < 1e-4, (stage, error)


@pytest.mark.parametrize("name", list(RELEASES))
def test_release_round_trips_and_audiocraft_loads_the_export(audiocraft, tmp_path, name, capsys):
    original, cfg = release(tmp_path / "release", name)
    ckpt, out = tmp_path / "ours.ckpt", tmp_path / "export"
    convert_main(["audiocraft", str(tmp_path / "release" / "state_dict.bin"), str(ckpt)])
    umask = os.umask(0o022)
    try:
        assert export_main([str(ckpt), str(out), "--format", "audiocraft"]) == 0
    finally:
        os.umask(umask)
    client = RELEASES[name][1]
    assert f"from audiocraft.models import {client}" in (out / "README.md").read_text()
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())
    exported = torch.load(out / "state_dict.bin", weights_only=True)
    assert set(exported) == {"best_state", "xp.cfg", "version", "exported"} and exported["exported"] is True
    assert exported["best_state"].keys() == original.keys()  # audiocraft's names, nothing more
    assert all(v.dtype == torch.float16 and torch.equal(v, original[k]) for k, v in exported["best_state"].items())
    codec = torch.load(out / "compression_state_dict.bin", weights_only=True)
    if cfg["sample_rate"] == 16000:  # audiocraft's own codec travels as its file
        assert (out / "compression_state_dict.bin").read_bytes() == \
            (tmp_path / "release" / "compression_state_dict.bin").read_bytes()
    else:
        assert codec == {"pretrained": "facebook/encodec_32khz"}
    model = getattr(audiocraft, client).get_pretrained(str(out), device="cpu")
    assert model.sample_rate == cfg["sample_rate"]
    ours = read_audiocraft(out / "state_dict.bin")  # our reader reads the export back as it read the release
    assert ours.config == read_audiocraft(tmp_path / "release" / "state_dict.bin").config
    assert_same_logits(model.lm, ours.build_model(), T5_WIDTH[cfg["conditioners"]["description"]["t5"]["name"]])


def test_lora_fine_tune_exported_merged_reproduces_base_plus_adapter_in_audiocraft(audiocraft, tmp_path):
    release(tmp_path / "release", "magnet-small-10secs", seed=3)
    base = tmp_path / "base.ckpt"
    convert_main(["audiocraft", str(tmp_path / "release" / "state_dict.bin"), str(base)])
    model = load_pretrained(base).model
    identity = BaseIdentity(str(base), base_fingerprint(model))
    lora = LoraConfig(rank=4, alpha=8.0, dropout=0.0, targets=["self_attention", "cross_attention", "feed_forward"])
    apply_lora(model, lora)
    torch.manual_seed(0)
    with torch.no_grad():  # a "fine-tuned" adapter: B away from its zero start
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    adapter = write_adapter_folder(Adapter(lora, lora_state_dict(model), identity, model.family, "test"),
                                   tmp_path / "adapter")
    out = tmp_path / "merged"
    assert export_main([str(base), str(out), "--format", "audiocraft", "--adapter", str(adapter),
                        "--dtype", "float32"]) == 0
    assert "LoRA adapters (rank 4" in (out / "README.md").read_text()
    loaded = audiocraft.MAGNeT.get_pretrained(str(out), device="cpu")
    assert_same_logits(loaded.lm, model.eval(), 768)  # audiocraft's merged weights vs our base + adapter
