"""CLAP score: mean cosine similarity between audio and text embeddings of paired (clip, caption) examples."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from .embedders.base import AudioEmbedder, EmbedderHolder


class CLAPScore(Metric):
    """Mean over pairs of cos(audio_emb, text_emb); states are a float64 sum and a count (exact across ranks).

    Without an embedder: ``update(audio_emb [N, D], text_emb [N, D])``.
    With a CLAP embedder (one that also has ``embed_text(texts) -> [N, D]``): ``update(wav [N, C, L], texts,
    sample_rate)``. No clipping or scaling (the reference protocol reports the raw mean cosine).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, embedder: AudioEmbedder | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if embedder is not None and not callable(getattr(embedder, "embed_text", None)):
            raise ValueError(f"CLAPScore needs an embedder with embed_text(); {embedder.name} has none.")
        self._holder = EmbedderHolder(embedder)
        self.add_state("similarity_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @property
    def embedder(self) -> AudioEmbedder | None:
        return self._holder.get()

    def update(self, audio: Tensor, text: Tensor | Sequence[str], sample_rate: int | None = None) -> None:
        embedder = self.embedder
        if embedder is not None:
            if sample_rate is None or isinstance(text, Tensor):
                raise TypeError("With an embedder, call update(wav [N, C, L], texts: list[str], sample_rate).")
            if len(text) != audio.shape[0]:
                raise ValueError(f"{audio.shape[0]} clips but {len(text)} texts.")
            audio_emb = embedder(audio, sample_rate)
            text_emb = embedder.embed_text(list(text)).to(audio_emb.device)
        else:
            if not isinstance(text, Tensor):
                raise TypeError("Without an embedder, update(audio_emb [N, D], text_emb [N, D]) takes tensors.")
            audio_emb, text_emb = audio, text
        if audio_emb.dim() != 2 or audio_emb.shape != text_emb.shape:
            raise ValueError(f"Expected paired embeddings [N, D]; got {tuple(audio_emb.shape)} and "
                             f"{tuple(text_emb.shape)}.")
        if not (torch.isfinite(audio_emb).all() and torch.isfinite(text_emb).all()):
            raise ValueError("Embeddings contain NaN or inf values.")
        cos = F.cosine_similarity(audio_emb.detach().double(), text_emb.detach().double(), dim=-1)
        self.similarity_sum += cos.sum().to(self.similarity_sum.device)
        self.count += cos.shape[0]

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise RuntimeError("CLAPScore.compute() called before any update.")
        return (self.similarity_sum / self.count).float()
