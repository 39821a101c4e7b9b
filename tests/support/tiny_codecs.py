"""Tiny random-weight EnCodecs of both families (transformers' and the encodec package's) and varied audio."""

from __future__ import annotations

import math

import torch


def tiny_hf_model(**overrides):
    from transformers import EncodecConfig, EncodecModel

    kw = dict(sampling_rate=16000, num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=64,
              upsampling_ratios=[4, 4, 4], target_bandwidths=[3.0], num_lstm_layers=1, use_causal_conv=False,
              use_conv_shortcut=False)
    kw.update(overrides)
    return EncodecModel(EncodecConfig(**kw))


def tiny_pkg_model(segment=None, normalize=False):
    import encodec
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    enc = SEANetEncoder(channels=1, dimension=16, n_filters=4, ratios=[8, 4], lstm=1)
    dec = SEANetDecoder(channels=1, dimension=16, n_filters=4, ratios=[8, 4], lstm=1)
    quantizer = ResidualVectorQuantizer(dimension=16, n_q=4, bins=32)
    return encodec.EncodecModel(enc, dec, quantizer, [1.5, 3.0], 8000, 1, normalize=normalize, segment=segment,
                                name="tiny8k")


def varied_audio(sr=16000, seconds=1.0):
    t = torch.arange(int(sr * seconds)) / sr
    tones = [0.6 * torch.sin(2 * math.pi * f * t * (1 + 0.5 * t)) for f in (110, 440, 1500, 3000)]
    noise = [0.3 * torch.randn(t.shape[0]) for _ in range(2)]
    return [w[None] for w in tones + noise]  # [C=1, N] each


TINY_CODEC = {"sampling_rate": 16000, "num_filters": 4, "hidden_size": 16, "codebook_dim": 16, "codebook_size": 64,
              "upsampling_ratios": [4, 4, 4], "target_bandwidths": [3.0], "num_lstm_layers": 1,
              "use_causal_conv": False, "use_conv_shortcut": False, "normalize": False}  # the demo corpus's codec
