"""Mel-spectrogram pictures for experiment loggers, without matplotlib: torchaudio's MelSpectrogram in dB and a
small colour map (dark violet -> red -> yellow, interpolated between five anchor colours defined here)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Anchor colours (RGB, 0-255) from silence to the loudest bin.
_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float64)


def colorize(values: np.ndarray) -> np.ndarray:
    """values [H, W] in [0, 1] -> uint8 RGB [H, W, 3] (piecewise-linear between the anchor colours)."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(np.floor(scaled).astype(np.int64), len(_ANCHORS) - 2)
    frac = (scaled - low)[..., None]
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def mel_image(wav: Tensor, sample_rate: int, n_mels: int = 80, top_db: float = 80.0,
              hop_seconds: float = 0.01) -> np.ndarray:
    """wav [C, L] or [L] -> uint8 RGB picture [n_mels, frames, 3] of the mono mel spectrogram (low bands at the
    bottom, dB scaled to the clip's own peak and clipped ``top_db`` below it)."""
    import torchaudio

    mono = wav.detach().float().cpu()
    mono = mono.mean(0) if mono.dim() == 2 else mono
    if mono.dim() != 1:
        raise ValueError(f"Expected audio [C, L] or [L], got shape {tuple(wav.shape)}.")
    hop = max(1, int(sample_rate * hop_seconds))
    n_fft = 1 << max(8, int(np.ceil(np.log2(4 * hop))))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                               f_max=sample_rate / 2)(mono)  # [n_mels, frames]
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    db = (db - db.max() + top_db).clamp_min(0) / top_db
    return colorize(db.flip(0).numpy())
