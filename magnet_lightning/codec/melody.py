"""Melody waveforms -> chroma, as audiocraft's `ChromaStemConditioner` computes it: each melody converted to the
model's rate and down-mixed (julius' resampling, audiocraft's `convert_audio`), the batch zero-padded to its longest
melody (an absent melody is a 1-sample silence, `nullify_wav`), stem separation (drums and bass removed; skipped for a
batch of 1-sample waveforms, the reference's null condition), then the chroma (models/chroma.py). For the prefix of
MusicGen-melody (`match_len_on_eval`), the chroma is cut or tiled to the frames of the training segment.

Shapes: B batch, C channels, N samples, Tc chroma frames, P prefix frames, C12 chroma bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from magnet_lightning.codec.stems import StemSeparator
from magnet_lightning.config import MelodyConfig
from magnet_lightning.models.chroma import ChromaExtractor

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
"""Sample rates a melody clip may have (below 8 kHz the chroma's upper octaves are lost; above, not audio files)."""
SILENCE_PEAK = 1e-4
"""A melody whose peak amplitude is below this is silent (the tokenizer's threshold)."""


def melody_problem(wav: torch.Tensor, sample_rate: int, cfg: MelodyConfig) -> str | None:
    """Why a melody clip [C, N] cannot condition a model (too short, silent, odd rate, not finite), or None."""
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE or int(sample_rate) != sample_rate:
        return (f"its sample rate {sample_rate} Hz is not an audio rate between {MIN_SAMPLE_RATE} and "
                f"{MAX_SAMPLE_RATE} Hz: resample it, e.g. to {cfg.sample_rate} Hz")
    seconds, window = wav.shape[-1] / sample_rate, 2 ** cfg.radix2_exp / cfg.sample_rate
    if seconds < window:
        return (f"it is {seconds:.3f} s long, shorter than one chroma window ({window:.3f} s): give at least "
                f"{math.ceil(window * 10) / 10:g} s of melody")
    if not bool(torch.isfinite(wav).all()):
        return "it holds NaN or infinite samples"
    if float(wav.abs().max()) < SILENCE_PEAK:
        return f"it is silent (peak amplitude below {SILENCE_PEAK:g})"
    return None


def to_model_rate(wav: torch.Tensor, sample_rate: int, cfg: MelodyConfig) -> torch.Tensor:
    """[C, N] at `sample_rate` -> mono [1, N'] at the chroma's rate (audiocraft's convert_audio: the channels' mean,
    julius' resampling)."""
    import julius

    mono = wav.float().mean(dim=0, keepdim=True)
    return julius.resample_frac(mono, int(sample_rate), cfg.sample_rate) if sample_rate != cfg.sample_rate else mono


class MelodyExtractor:
    """The chroma of melodies.

    stems: with `cfg.stems` 'htdemucs', a StemSeparator, or where to load htdemucs from when first needed ('htdemucs':
    the Hugging Face cache, or a folder; `codec.stems.htdemucs_files`); ignored with 'none' (the whole mix).
    """

    def __init__(self, cfg: MelodyConfig | dict, stems: StemSeparator | str = "htdemucs",
                 device: torch.device | str = "cpu"):
        self.cfg = cfg if isinstance(cfg, MelodyConfig) else MelodyConfig.from_dict(cfg)
        self.device = torch.device(device)
        self._stems = None if self.cfg.stems == "none" else stems
        self.chroma_extractor = ChromaExtractor(self.cfg).to(self.device)

    @property
    def stems(self) -> StemSeparator | None:
        """The stem separator (loaded on first use), None for 'none'."""
        if isinstance(self._stems, str):
            self._stems = StemSeparator.load(self._stems, self.device)
        return self._stems

    @torch.no_grad()
    def chroma(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, N] at cfg.sample_rate -> chroma [B, Tc, C12] (stems first, unless N == 1: the null condition)."""
        wav = wav.to(self.device).float()
        if self._stems is not None and wav.shape[-1] > 1:
            wav = self.stems(wav, self.cfg.sample_rate)
        return self.chroma_extractor(wav)

    def collate(self, melodies: Sequence[torch.Tensor | None], sample_rate: int) -> torch.Tensor:
        """Melodies [C, N_i] at `sample_rate` (None: absent) -> [B, 1, N] at cfg.sample_rate, zero-padded to the
        longest (the reference's `_collate_wavs`)."""
        wavs = [torch.zeros(1, 1) if m is None else to_model_rate(m, sample_rate, self.cfg) for m in melodies]
        batch = torch.zeros(len(wavs), 1, max(w.shape[-1] for w in wavs))
        for i, w in enumerate(wavs):
            batch[i, :, : w.shape[-1]] = w
        return batch

    def batch_chroma(self, melodies: Sequence[torch.Tensor | None], sample_rate: int) -> torch.Tensor:
        """[B, Tc, C12]: the chroma of the collated batch."""
        return self.chroma(self.collate(melodies, sample_rate))

    def prefix(self, chroma: torch.Tensor) -> torch.Tensor:
        """[B, Tc, C12] -> [B, P, C12], P = cfg.prefix_frames: cut, or tiled (`match_len_on_eval`)."""
        frames = self.cfg.prefix_frames
        if chroma.shape[1] < frames:
            chroma = chroma.repeat(1, math.ceil(frames / chroma.shape[1]), 1)
        return chroma[:, :frames]


def tile(wav: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Samples [start, start + length) of wav [C, N] repeated periodically (audiocraft's long-form melody)."""
    positions = torch.arange(start, start + length, device=wav.device) % wav.shape[-1]
    return wav[..., positions]
