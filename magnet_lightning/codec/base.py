"""The codec interface (`Codec`: frozen, waveforms <-> RVQ token ids) and the audio conversion every codec applies
to its input (`convert_audio`). The codecs themselves: codecs.py (EnCodec) and stereo.py (interleaved stereo).

Shapes: B batch, C channels, N samples, K codebooks, T frames, V codebook size, D latent width.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def convert_audio(wav: torch.Tensor, sample_rate: int, target_rate: int, target_channels: int) -> torch.Tensor:
    """Resample and down-mix/up-mix audio to a codec's format.

    Args:
        wav: [B, C, N] or [C, N] float waveform.
        sample_rate: rate of `wav` in Hz.
        target_rate: the codec's rate in Hz.
        target_channels: 1 (mono: average the channels) or 2 (stereo: mono input is duplicated).

    Returns:
        [B, target_channels, N'] (or [target_channels, N'] for 2-D input), N' = ceil(N * target_rate / sample_rate).
    """
    import torchaudio.functional as AF

    squeeze = wav.dim() == 2
    if squeeze:
        wav = wav[None]
    if wav.dim() != 3:
        raise ValueError(f"expected audio [B, C, N] or [C, N], got shape {tuple(wav.shape)}")
    channels = wav.shape[1]
    if channels != target_channels:
        if target_channels == 1:
            wav = wav.mean(dim=1, keepdim=True)
        elif channels == 1:
            wav = wav.expand(-1, target_channels, -1)
        else:
            raise ValueError(f"cannot map {channels} channels to {target_channels}")
    if sample_rate != target_rate:
        wav = AF.resample(wav, int(sample_rate), int(target_rate))
    return wav[0] if squeeze else wav


class Codec(nn.Module):
    """A frozen codec: `encode(wav [B, C, N], sample_rate) -> codes [B, K, T]`, `decode(codes) -> wav [B, C, N]`.

    Subclasses set `name` (stable, written into shard manifests), `sample_rate`, `channels`, `frame_rate`,
    `num_codebooks`, `codebook_size` and implement `_encode` / `decode` on audio already in the codec's format.
    """

    name: str
    sample_rate: int
    channels: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    random_weights: bool = False
    """True for a random-weight stand-in (a folder with `utils.provenance.RANDOM_MARKER`)."""
    source: str = ""
    """Where it was loaded from: an absolute folder or file path, or the hub id."""

    def _freeze(self) -> None:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> Codec:
        # A frozen codec stays in eval mode even when its parent module is put in training mode.
        return super().train(False)

    def num_frames(self, num_samples: int) -> int:
        """Frames T produced for `num_samples` samples at the codec's rate."""
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Tokenize audio.

        Args:
            wav: [B, C, N] float waveform in [-1, 1] at `sample_rate` (any channel count; converted here).
            sample_rate: rate of `wav` in Hz.

        Returns:
            LongTensor [B, K, T] with ids in [0, V), T = ceil(N' * frame_rate / codec sample rate).
        """
        wav = convert_audio(wav.float(), sample_rate, self.sample_rate, self.channels).to(self.device)
        codes = self._encode(wav)
        return codes[..., : self.num_frames(wav.shape[-1])].long()

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode_latents(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Continuous encoder output before quantisation (e.g. for a codec-latent FAD).

        Args:
            wav: [B, C, N] float waveform at `sample_rate` (resampled / down-mixed like `encode`).
            sample_rate: rate of `wav` in Hz.

        Returns:
            FloatTensor [B, D, T], D = `latent_dim`, T = the frames `encode` gives for the same audio.
        """
        wav = convert_audio(wav.float(), sample_rate, self.sample_rate, self.channels).to(self.device)
        return self._latents(wav)[..., : self.num_frames(wav.shape[-1])].float()

    def _latents(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] long -> waveform [B, C, N] float at `sample_rate`."""
        raise NotImplementedError

    @torch.no_grad()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] long -> the quantizer's latents [B, D, T] (the sum of the K codebook vectors): what the
        decoder reads, computed from the tokens alone (a token-space embedding for metrics)."""
        return self.model.quantizer.decode(codes.to(self.device).long().transpose(0, 1)).float()

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, sample_rate={self.sample_rate}, channels={self.channels}, "
            f"frame_rate={self.frame_rate}, K={self.num_codebooks}, V={self.codebook_size}"
        )
