"""The one interface every evaluation embedder follows, plus the holder that keeps it out of module trees.

An embedder takes audio at any sample rate and channel count, ``wav [N, C, L]``, converts it to mono at its own
``sample_rate`` and returns either embeddings (``kind == "embedding"``, width ``dim``) or class probabilities
(``kind == "probabilities"``, ``dim`` classes):

- ``embed_frames(wav, sample_rate) -> [N, F, dim]``: one row per analysis frame / chunk (F = 1 for clip-level
  models such as CLAP). FAD uses every row; KL pairs rows of generated and reference audio.
- ``forward(wav, sample_rate) -> [N, dim]``: the mean over frames (for probabilities: the mean distribution).

Embedders are frozen, run in eval mode under ``torch.no_grad`` and must never become children of a
LightningModule: they would be saved in every checkpoint and wrapped by DDP. Metrics hold them through
:class:`EmbedderHolder`, which hides them from ``nn.Module`` registration.
"""
from __future__ import annotations

from typing import Literal

import julius
import torch
from torch import Tensor, nn


def to_mono_at(wav: Tensor, sample_rate: int, target_rate: int) -> Tensor:
    """[N, C, L] (or [N, L]) float audio at ``sample_rate`` -> mono [N, L'] at ``target_rate``.

    As audiocraft's ``convert_audio`` (which its KL, CLAP and FAD metrics call): ``julius.resample_frac`` on every
    channel first, then the mean over channels."""
    if wav.dim() == 2:
        wav = wav.unsqueeze(1)
    if wav.dim() != 3:
        raise ValueError(f"Expected audio [N, C, L], got shape {tuple(wav.shape)}.")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}.")
    wav = wav.float()
    if sample_rate != target_rate:
        wav = julius.resample_frac(wav, int(sample_rate), int(target_rate))
    return wav.mean(dim=1)


class AudioEmbedder(nn.Module):
    """Base class: subclasses set ``name``, ``sample_rate``, ``dim``, ``kind`` and implement ``_frames``."""

    name: str = "embedder"
    kind: Literal["embedding", "probabilities"] = "embedding"

    def __init__(self, sample_rate: int, dim: int) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.dim = int(dim)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def _frames(self, mono: Tensor) -> Tensor:
        """mono [N, L] at ``self.sample_rate`` on ``self.device`` -> [N, F, dim]."""
        raise NotImplementedError

    @torch.no_grad()
    def embed_frames(self, wav: Tensor, sample_rate: int) -> Tensor:
        """wav [N, C, L] at ``sample_rate`` -> [N, F, dim] float32 on the input's device."""
        was_training = self.training
        self.eval()
        try:
            mono = to_mono_at(wav.to(self.device), sample_rate, self.sample_rate)
            frames = self._frames(mono)
        finally:
            self.train(was_training)
        if frames.dim() != 3 or frames.shape[0] != wav.shape[0] or frames.shape[-1] != self.dim:
            raise RuntimeError(f"{self.name} returned {tuple(frames.shape)}, expected [N, F, {self.dim}].")
        return frames.float().to(wav.device)

    def forward(self, wav: Tensor, sample_rate: int) -> Tensor:
        """wav [N, C, L] -> [N, dim]: mean over frames."""
        return self.embed_frames(wav, sample_rate).mean(dim=1)


class EmbedderHolder:
    """Holds an embedder without registering it as a submodule of the object that owns the holder.

    ``nn.Module.__setattr__`` registers only Modules, Parameters and tensors assigned directly; an embedder
    inside this plain object is invisible to ``state_dict()``, ``parameters()``, ``.to()`` and DDP.
    """

    __slots__ = ("_embedder",)

    def __init__(self, embedder: AudioEmbedder | None = None) -> None:
        if embedder is not None and not isinstance(embedder, AudioEmbedder):
            raise TypeError(f"Expected an AudioEmbedder, got {type(embedder).__name__}.")
        if embedder is not None:
            embedder.requires_grad_(False).eval()
        self._embedder = embedder

    def get(self) -> AudioEmbedder | None:
        return self._embedder
