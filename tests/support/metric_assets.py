"""The metric tests' material (fixtures registered as a pytest plugin, see tests/conftest.py): a toy CLAP-shaped
embedder (`toy_clap_registered` registers it: request it where a test uses "toy_clap"), a tiny 16-kHz codec
(`codec_dir`, `save_tiny_codec`) and a tiny module that generates with it."""

import pytest
import torch
from torch import nn

from magnet_lightning.metrics.embedders import AudioEmbedder, register_embedder
from support.helpers import tiny_module

RATE, FRAMES = 16000, 60  # tiny codec: 16 kHz, 50 Hz -> 1.2 s validation items (VGGish needs >= 0.975 s)
TINY_VGGISH = {"conv_channels": [4, "M", 4, "M", 8, "M", 8, "M"], "fc_dim": 16, "embedding_dim": 8,
               "final_relu": False}


class ToyClap(AudioEmbedder):
    """A CLAP-shaped test embedder (audio and text into one 8-d space); the real CLAP takes ~25 s to build."""

    name, kind = "toy_clap", "embedding"

    def __init__(self) -> None:
        super().__init__(RATE, 8)
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("audio_proj", torch.randn(32, 8, generator=gen))
        self.register_buffer("text_proj", torch.randn(256, 8, generator=gen))

    def _frames(self, mono):
        spectrum = torch.fft.rfft(mono).abs()[:, 1:]
        bands = torch.stack([b.mean(-1) for b in spectrum.chunk(32, dim=-1)], -1).log1p()  # [N, 32]
        return nn.functional.normalize(bands @ self.audio_proj, dim=-1)[:, None]

    def embed_text(self, texts):
        counts = torch.stack([torch.bincount(torch.tensor(list(t.encode())), minlength=256)[:256].float()
                              for t in texts])
        return nn.functional.normalize(counts @ self.text_proj, dim=-1)


@pytest.fixture(scope="module")
def toy_clap_registered():
    from magnet_lightning.metrics import embedders

    register_embedder("toy_clap", lambda **kw: ToyClap())
    yield
    embedders._LOADERS.pop("toy_clap")


def save_tiny_codec(path):
    """Random HF EnCodec, 16 kHz, hop 320 (50 Hz), K=4 codebooks of V=16 (the tiny model's sizes)."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig(
        sampling_rate=RATE, num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=16,
        upsampling_ratios=[8, 5, 4, 2], target_bandwidths=[0.8], num_lstm_layers=1, use_causal_conv=False,
        use_conv_shortcut=False))
    with torch.no_grad():
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_()
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "codec")


def make_module(codec_dir, **overrides):
    return tiny_module(codec=codec_dir, sample_rate=RATE, frame_rate=50.0, segment_duration=FRAMES / 50,
                       decoding={"decoding_steps": [2, 1, 1, 1]}, **overrides)
