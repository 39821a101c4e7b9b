"""The codec's own continuous latents (encoder output before quantisation) as a weight-light FAD embedder.

Works with any object following the Codec interface (docs/CONTRACTS.md) that also offers the optional method
``encode_latents(wav [B, C, N], sample_rate) -> FloatTensor [B, D, T]`` (resampling / down-mixing like
``encode``) and, ideally, the attribute ``latent_dim`` (D). Every latent frame is one FAD sample.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from magnet_lightning.codec.codecs import load_codec

from .base import AudioEmbedder

LATENT_METHOD = "encode_latents"


class CodecLatentEmbedder(AudioEmbedder):
    """audio -> codec latent frames [N, T, D]."""

    name = "codec"
    kind = "embedding"

    def __init__(self, codec: Any, dim: int | None = None) -> None:
        if not callable(getattr(codec, LATENT_METHOD, None)):
            raise TypeError(f"{type(codec).__name__} has no {LATENT_METHOD}(wav, sample_rate) -> [B, D, T] method; "
                            "the codec FAD embedder needs the continuous latents before quantisation.")
        dim = dim if dim is not None else getattr(codec, "latent_dim", None)
        if dim is None:
            raise ValueError("Give dim=D: the codec has no latent_dim attribute.")
        super().__init__(int(codec.sample_rate), int(dim))
        self.codec = codec

    @property
    def device(self) -> torch.device:
        device = getattr(self.codec, "device", None)
        device = device() if callable(device) else device
        return torch.device(device) if device is not None else super().device

    @torch.no_grad()
    def embed_frames(self, wav: Tensor, sample_rate: int) -> Tensor:
        """wav [N, C, L] at ``sample_rate`` -> [N, T, D]; the codec resamples and down-mixes itself."""
        if wav.dim() != 3:
            raise ValueError(f"Expected audio [N, C, L], got shape {tuple(wav.shape)}.")
        latents = getattr(self.codec, LATENT_METHOD)(wav.to(self.device), int(sample_rate))  # [N, D, T]
        if latents.dim() != 3 or latents.shape[1] != self.dim:
            raise RuntimeError(f"{LATENT_METHOD} returned {tuple(latents.shape)}, expected [N, {self.dim}, T].")
        return latents.transpose(1, 2).float().to(wav.device)


def load_codec_embedder(codec: Any = None, name_or_path: str | None = None, dim: int | None = None,
                        **codec_kwargs: Any) -> CodecLatentEmbedder:
    """Wrap a codec object, or load one with ``codec.codecs.load_codec(name_or_path, **codec_kwargs)``."""
    if codec is None:
        if name_or_path is None:
            raise ValueError("Give codec=<Codec> or name_or_path=<codec name or path>.")

        codec = load_codec(name_or_path, **codec_kwargs)
    return CodecLatentEmbedder(codec, dim=dim)
