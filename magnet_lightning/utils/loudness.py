"""Loudness normalisation (ITU-R BS.1770 via pyloudnorm) of generated audio before metrics: −14 LUFS by default."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

TARGET_LUFS = -14.0
MIN_SECONDS = 0.4  # one BS.1770 gating block


def integrated_loudness(wav: Tensor, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of one clip [C, L]; -inf for silence. Raises if shorter than 0.4 s."""
    import pyloudnorm

    if wav.dim() != 2:
        raise ValueError(f"Expected one clip [C, L], got shape {tuple(wav.shape)}.")
    if wav.shape[-1] < MIN_SECONDS * sample_rate:
        raise ValueError(f"Loudness needs at least {MIN_SECONDS} s of audio, got {wav.shape[-1] / sample_rate:.3f} s.")
    data = wav.detach().double().cpu().numpy().T  # pyloudnorm wants [L, C]
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


def loudness_normalize(wav: Tensor, sample_rate: int, target_lufs: float = TARGET_LUFS) -> Tensor:
    """Scale each clip of ``wav`` ([C, L] or [B, C, L]) to ``target_lufs``; returns a new tensor, same shape.

    Clips that are silent (loudness -inf) or shorter than 0.4 s cannot be measured: they are returned unchanged,
    and how many is logged as a warning. No clipping: the result may exceed [-1, 1] (write it as float, or clip
    knowingly).
    """
    single = wav.dim() == 2
    batch = wav.unsqueeze(0) if single else wav
    if batch.dim() != 3:
        raise ValueError(f"Expected audio [C, L] or [B, C, L], got shape {tuple(wav.shape)}.")
    gains = torch.ones(batch.shape[0], dtype=torch.float64)
    skipped = 0
    for i, clip in enumerate(batch):
        if clip.shape[-1] < MIN_SECONDS * sample_rate:
            skipped += 1
            continue
        loudness = integrated_loudness(clip, sample_rate)
        if not np.isfinite(loudness):
            skipped += 1
            continue
        gains[i] = 10.0 ** ((target_lufs - loudness) / 20.0)
    if skipped:
        logger.warning("Loudness normalisation left %d of %d clips unchanged (silent or shorter than %.1f s).",
                       skipped, batch.shape[0], MIN_SECONDS)
    out = batch * gains.to(device=batch.device, dtype=batch.dtype)[:, None, None]
    return out[0] if single else out


def peak_normalize(wav: Tensor, peak_db: float = -1.0) -> Tensor:
    """Scale each clip of ``wav`` ([C, L] or [B, C, L]) so its absolute peak is ``peak_db`` dBFS (reference FAD
    writes both sets this way before VGGish). All-zero clips are returned unchanged."""
    batch = wav.unsqueeze(0) if wav.dim() == 2 else wav
    if batch.dim() != 3:
        raise ValueError(f"Expected audio [C, L] or [B, C, L], got shape {tuple(wav.shape)}.")
    peaks = batch.abs().amax(dim=(1, 2), keepdim=True)
    target = 10.0 ** (peak_db / 20.0)
    out = torch.where(peaks > 0, batch * (target / peaks.clamp_min(1e-12)), batch)
    return out[0] if wav.dim() == 2 else out
