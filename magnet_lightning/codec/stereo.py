"""Stereo audio as interleaved codebooks of a mono codec (audiocraft's `InterleaveStereoCompressionModel`, the codec
of `facebook/musicgen-stereo-*`).

The mono codec encodes the left and the right channel separately; their K codebooks are interleaved per channel
into 2K: codebook 2k is the left channel's k-th, 2k + 1 the right channel's (audiocraft's `per_timestep=False`
layout, the one the stereo releases use, with the delay pattern [0, 0, 1, 1, ..., K-1, K-1]). Decoding splits the
codebooks back and stacks the two decoded channels.

Shapes: B batch, C channels (2), N samples, K codebooks of the mono codec, T frames, D latent width.
"""

from __future__ import annotations

import torch

from magnet_lightning.codec.base import Codec
from magnet_lightning.utils.codec_names import STEREO_PREFIX


def interleave(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left, right [B, K, T] -> [B, 2K, T] with codebook 2k = left k, 2k + 1 = right k."""
    return torch.stack([left, right], dim=2).flatten(1, 2)


def deinterleave(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 2K, T] -> (left [B, K, T], right [B, K, T]); the inverse of `interleave`."""
    if codes.shape[1] % 2:
        raise ValueError(f"interleaved stereo codes need an even number of codebooks, got {codes.shape[1]}")
    return codes[:, 0::2], codes[:, 1::2]


class InterleavedStereoCodec(Codec):
    """A mono codec applied to each channel of stereo audio, codebooks interleaved per channel.

    Same sample rate, frame rate and codebook size as the mono codec; `channels` 2 and `num_codebooks` 2K. Mono
    input is duplicated to both channels (`convert_audio`), as audiocraft's stereo models expect stereo audio.
    """

    def __init__(self, mono: Codec):
        super().__init__()
        if mono.channels != 1:
            raise ValueError(f"stereo interleaving wraps a mono codec; {mono.name!r} has {mono.channels} channels")
        self.mono = mono
        self.name = STEREO_PREFIX + mono.name
        self.sample_rate, self.frame_rate = mono.sample_rate, mono.frame_rate
        self.channels = 2
        self.num_codebooks = 2 * mono.num_codebooks
        self.codebook_size = mono.codebook_size
        self.latent_dim = 2 * int(getattr(mono, "latent_dim", 0))
        self.random_weights = mono.random_weights
        self.source = mono.source
        self._freeze()

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 2, N] in the codec's format -> [B, 2K, T]."""
        return interleave(self.mono._encode(wav[:, :1]), self.mono._encode(wav[:, 1:]))

    def _latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 2, N] -> [B, 2D, T]: the left channel's latents, then the right's."""
        return torch.cat([self.mono._latents(wav[:, :1]), self.mono._latents(wav[:, 1:])], dim=1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 2K, T] -> [B, 2, N]."""
        left, right = deinterleave(codes)
        return torch.cat([self.mono.decode(left), self.mono.decode(right)], dim=1)

    @torch.no_grad()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 2K, T] -> [B, 2D, T]: the quantizer latents of the left channel, then the right's."""
        left, right = deinterleave(codes)
        return torch.cat([self.mono.dequantize(left), self.mono.dequantize(right)], dim=1)
