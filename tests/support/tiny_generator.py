"""Shared fixtures (a pytest plugin, see tests/conftest.py): the tiny MAGNeT checkpoint with its 16-kHz codec
(`assets`), its generator (`gen`), an autoregressive (`ar_ckpt`) and a Hybrid-MAGNeT (`hybrid_ckpt`) checkpoint of
the same codec beside it, and `no_loading` (a model load fails the test)."""

import pytest
import torch

from magnet_lightning.generation.generator import MagnetGenerator
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from support.helpers import TINY_MODEL, save_delayed_family_checkpoint, tiny_module

DURATION = 0.5  # 25 frames: not a multiple of the span length 3
STEPS = [3, 2, 2, 2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from transformers import EncodecConfig, EncodecModel

    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    codec = EncodecModel(EncodecConfig(
        sampling_rate=16000, num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=64,
        upsampling_ratios=[8, 5, 4, 2], target_bandwidths=[1.2], num_lstm_layers=1, use_causal_conv=False,
        use_conv_shortcut=False))
    with torch.no_grad():  # spread the codebooks so that encoding real audio gives varied tokens
        for layer in codec.quantizer.layers:
            layer.codebook.embed.normal_()
    codec.save_pretrained(root / "codec")
    module = tiny_module(model=dict(TINY_MODEL, codebook_size=64), codec=str(root / "codec"), sample_rate=16000,
                         frame_rate=50.0, segment_duration=DURATION, decoding={"decoding_steps": STEPS})
    ckpt = root / "tiny.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    return ckpt, root


@pytest.fixture(scope="module")
def gen(assets):
    return MagnetGenerator.from_pretrained(assets[0], device="cpu")


@pytest.fixture(scope="module")
def ar_ckpt(assets):
    _, root = assets
    return save_delayed_family_checkpoint(ARTransformer, root / "ar.ckpt", root, 1, DURATION, {"top_k": 20})


@pytest.fixture(scope="module")
def hybrid_ckpt(assets):
    _, root = assets
    return save_delayed_family_checkpoint(HybridMagnetTransformer, root / "hybrid.ckpt", root, 2, DURATION,
                                          {"decoding_steps": STEPS, "prompt_seconds": 0.1})


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(MagnetGenerator, "from_pretrained", refuse)
