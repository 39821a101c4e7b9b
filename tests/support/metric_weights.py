"""Inputs and weights shared by the audiocraft metric fixtures' maker and the test that reads them.

The networks are the real architectures (PaSST-S 10 s / 20 s, CLAP HTSAT-base + RoBERTa-base) with weights set from
each parameter's *name* and shape only (not from the order in which the libraries draw random numbers), so the maker
and the test build identical networks without shipping hundreds of megabytes. Front-end parameters (spectrogram and
mel filter banks of CLAP) keep their analytic values; PaSST's front-end has no parameters (buffers only).
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import nn

SKIP = ("spectrogram_extractor", "logmel_extractor", "position_ids")


@torch.no_grad()
def set_weights(module: nn.Module, seed: int) -> float:
    """Overwrite every floating parameter and norm statistic of ``module`` deterministically; returns a fingerprint
    (the sum of absolute values), which the fixture records."""
    total = 0.0
    for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
        if any(s in name for s in SKIP) or not tensor.is_floating_point():
            continue
        gen = torch.Generator().manual_seed(seed + zlib.crc32(name.encode()))
        noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
        if name.endswith("running_var"):
            value = 1.0 + 0.1 * noise.abs()
        elif tensor.dim() == 1 and name.endswith("weight"):
            value = 1.0 + 0.1 * noise
        elif tensor.dim() <= 1:
            value = 0.1 * noise
        else:
            value = noise / math.sqrt(max(1, tensor[0].numel()))
        tensor.data.copy_(value.to(tensor.dtype))
        total += float(value.abs().sum())
    return total


def clip(seconds: float, sample_rate: int, channels: int, seed: int) -> torch.Tensor:
    """A stereo test clip [C, L]: two tones per channel, a chirp and seeded noise (float32, peak < 1)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(round(seconds * sample_rate)), dtype=torch.float64) / sample_rate
    rows = []
    for c in range(channels):
        f0 = 110.0 * (1 + seed % 5) * (1 + 0.5 * c)
        tone = 0.3 * torch.sin(2 * math.pi * f0 * t) + 0.2 * torch.sin(2 * math.pi * 2.5 * f0 * t + c)
        chirp = 0.15 * torch.sin(2 * math.pi * (200 + 300 * t) * t)
        rows.append(tone + chirp + 0.05 * torch.randn(t.shape, generator=gen, dtype=torch.float64))
    return torch.stack(rows).float()


def batch(lengths: list[float], sample_rate: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of the given lengths zero-padded to the longest: ([B, C, L], sizes [B]) as audiocraft's loader gives."""
    clips = [clip(s, sample_rate, channels, seed + i) for i, s in enumerate(lengths)]
    longest = max(c.shape[-1] for c in clips)
    out = torch.zeros(len(clips), channels, longest)
    for i, c in enumerate(clips):
        out[i, :, : c.shape[-1]] = c
    return out, torch.tensor([c.shape[-1] for c in clips])


# The fixture's cases: (name, PaSST pretrained length, clip lengths in seconds, sample rate)
KL_CASES = [("passt10", 10, [3.0, 2.2], 44100), ("passt20", 20, [2.6, 1.7], 48000)]
# Segmenting alone (no network): (PaSST pretrained length, sample rate, clip lengths in seconds)
SEGMENT_CASES = [(10, 44100, [10.6, 10.1, 0.1]), (20, 48000, [20.12, 5.0])]
CLAP_CASE = ([10.0, 4.0], 32000, ["a calm piano melody with soft strings", "fast drums and a distorted guitar"])
PASST_SEED, CLAP_SEED = 1234, 4321
