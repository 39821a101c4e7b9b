"""Chroma features of a waveform, as audiocraft's `ChromaExtractor` (audiocraft/modules/chroma.py) computes them:
a centred power spectrogram (Hann window of 2**radix2_exp samples, hop a quarter of it, normalised by the window's
energy), librosa's chroma filter bank (tuning 0) on it, each frame scaled to a maximum of 1, and with `argmax` only
the strongest bin kept (one-hot). A waveform shorter than one window is zero-padded to it, centred.

Shapes: B batch, N samples, Tc chroma frames, C chroma bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from magnet_lightning.config import MelodyConfig


def chroma_filter_bank(sample_rate: int, n_fft: int, n_chroma: int) -> torch.Tensor:
    """[C, n_fft // 2 + 1] float32: librosa's chroma filters (tuning 0), the reference's."""
    from librosa import filters

    return torch.from_numpy(filters.chroma(sr=sample_rate, n_fft=n_fft, tuning=0, n_chroma=n_chroma)).float()


class ChromaExtractor(nn.Module):
    """wav [B, N] or [B, 1, N] at `cfg.sample_rate` -> chroma [B, Tc, C], Tc = 1 + max(N, window) // hop."""

    def __init__(self, cfg: MelodyConfig):
        super().__init__()
        self.cfg = cfg
        self.n_fft = 2 ** cfg.radix2_exp
        self.hop = cfg.hop_length
        self.register_buffer("fbanks", chroma_filter_bank(cfg.sample_rate, self.n_fft, cfg.n_chroma),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] -> power spectrogram [B, F, Tc] (centred, reflect-padded, window-energy normalised)."""
        spec = torch.stft(wav, self.n_fft, self.hop, self.n_fft, window=self.window.to(wav.dtype), center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        spec = spec / self.window.pow(2).sum().sqrt()
        return spec.abs().pow(2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 3:
            if wav.shape[1] != 1:
                raise ValueError(f"chroma of mono audio [B, 1, N]; got {tuple(wav.shape)} (down-mix it first)")
            wav = wav[:, 0]
        wav = wav.float()
        if wav.shape[-1] < self.n_fft:
            pad = self.n_fft - wav.shape[-1]
            wav = F.pad(wav, (pad // 2, pad - pad // 2))
        raw = torch.einsum("cf,bft->bct", self.fbanks, self.spectrogram(wav))  # [B, C, Tc]
        chroma = F.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)  # [B, Tc, C]
        if self.cfg.argmax:
            chroma = F.one_hot(chroma.argmax(-1), self.cfg.n_chroma).to(chroma.dtype)
        return chroma
