"""Fréchet Audio Distance as an exact, distributed torchmetrics metric.

Each set (real / generated) is summarised by three sums: the feature sum [D], the outer-product sum [D, D] and the
row count, all float64. Sums reduce across ranks exactly (``dist_reduce_fx="sum"``) and memory is O(D²) whatever
the number of clips. The distance between the two Gaussians is

    d² = |μ_r − μ_g|² + Tr(Σ_r) + Tr(Σ_g) − 2 Tr((Σ_r^{1/2} Σ_g Σ_r^{1/2})^{1/2}),

with unbiased covariances (as ``numpy.cov``). The trace of the matrix square root is taken from the eigenvalues of
the symmetric PSD matrix Σ_r^{1/2} Σ_g Σ_r^{1/2}, which is stable where ``sqrtm(Σ_r Σ_g)`` is not.

Reference statistics can be computed once, saved with :meth:`FrechetAudioDistance.save_reference_stats` and
loaded into later runs with :meth:`FrechetAudioDistance.load_reference_stats` (or ``reference_stats=PATH``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from .embedders.base import AudioEmbedder, EmbedderHolder

logger = logging.getLogger(__name__)

STATS_FORMAT = "magnet_lightning.fad_reference_stats"


def gaussian_from_sums(total: Tensor, outer: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64) from a feature sum, an outer-product sum and a count."""
    if count < 2:
        raise ValueError(f"FAD needs at least 2 embeddings per set to estimate a covariance, got {count}.")
    total, outer = total.double(), outer.double()
    mu = total / count
    cov = (outer - count * torch.outer(mu, mu)) / (count - 1)
    return mu, (cov + cov.T) / 2


def _psd_sqrt(mat: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix [D, D] (negative round-off eigenvalues clipped)."""
    vals, vecs = torch.linalg.eigh(mat)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    """Fréchet distance (squared, as in FID/FAD) between N(mu1 [D], cov1 [D, D]) and N(mu2, cov2); float64 scalar."""
    mu1, cov1, mu2, cov2 = (t.double() for t in (mu1, cov1, mu2, cov2))
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt


class FrechetAudioDistance(Metric):
    """FAD between real (reference) and generated audio embeddings.

    Without an embedder, ``update(x [N, D], real: bool)`` takes precomputed embeddings (give ``num_features=D``).
    With one, ``update(wav [N, C, L], sample_rate, real=bool)`` embeds the audio first; frame-level embedders (VGGish:
    one row per 0.96 s, codec: one per frame) contribute every frame, as the reference FAD does.

    The embedder is held outside the module tree (see :class:`EmbedderHolder`): it is neither saved in checkpoints
    nor moved by ``.to()``; put it on its device yourself. ``compute()`` returns the squared Fréchet distance.
    Use ``update()`` + ``compute()``: calling the metric directly (``forward``) would compute a per-batch FAD, which
    needs both sets and at least 2 rows of each in that batch.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_features: int | None = None, embedder: AudioEmbedder | None = None,
                 reference_stats: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._holder = EmbedderHolder(embedder)
        if embedder is not None:
            if num_features is not None and num_features != embedder.dim:
                raise ValueError(f"num_features={num_features} differs from embedder dim {embedder.dim}.")
            num_features = embedder.dim
        if num_features is None:
            raise ValueError("FrechetAudioDistance needs num_features=D (precomputed embeddings) or an embedder.")
        self.num_features = int(num_features)
        dim = self.num_features
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self._loaded_reference: dict[str, Tensor] | None = None
        if reference_stats is not None:
            self.load_reference_stats(reference_stats)

    @property
    def embedder(self) -> AudioEmbedder | None:
        return self._holder.get()

    def update(self, x: Tensor, arg: Any = None, real: bool | None = None) -> None:
        """Add a batch: ``update(emb [N, D] or [N, F, D], real)``, or with an embedder ``update(wav, sr, real=...)``.
        """
        if self.embedder is not None:
            if arg is None or isinstance(arg, bool):
                raise TypeError("With an embedder, call update(wav [N, C, L], sample_rate, real=True/False).")
            if real is None:
                raise TypeError("update(wav, sample_rate, real=...) needs real=True (reference) or False (generated).")
            x = self.embedder.embed_frames(x, int(arg))
        else:
            real = arg if real is None else real
            if not isinstance(real, bool):
                raise TypeError("update(embeddings, real) needs real=True (reference) or False (generated).")
        feats = self._as_rows(x)
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + feats.sum(0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + feats.T @ feats)
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + feats.shape[0])

    def _as_rows(self, x: Tensor) -> Tensor:
        """[N, D] or [N, F, D] -> float64 rows [M, D] on the metric's device; rejects wrong widths and non-finite."""
        if x.dim() == 3:
            x = x.reshape(-1, x.shape[-1])
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"Expected embeddings [N, {self.num_features}] (or [N, F, D]), got {tuple(x.shape)}.")
        if not torch.isfinite(x).all():
            raise ValueError("Embeddings contain NaN or inf values.")
        return x.detach().to(device=self.real_sum.device, dtype=torch.float64)

    def _real_totals(self) -> tuple[Tensor, Tensor, int]:
        """Real-set sums of this run (already synced when called from compute) plus loaded reference stats."""
        total, outer, count = self.real_sum, self.real_outer, int(self.real_count)
        if self._loaded_reference is not None:
            ref = self._loaded_reference
            total = total + ref["sum"].to(total.device)
            outer = outer + ref["outer"].to(outer.device)
            count += int(ref["count"])
        return total, outer, count

    def compute(self) -> Tensor:
        mu_r, cov_r = gaussian_from_sums(*self._real_totals())
        mu_g, cov_g = gaussian_from_sums(self.fake_sum, self.fake_outer, int(self.fake_count))
        return frechet_distance(mu_r, cov_r, mu_g, cov_g).float()

    def reference_stats(self) -> dict[str, Any]:
        """The real-set sums summed over all ranks (a collective call in DDP: every rank must make it)."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            total, outer, count = self._real_totals()
            stats = {"sum": total.cpu().clone(), "outer": outer.cpu().clone(), "count": count}
        embedder = self.embedder
        return {"format": STATS_FORMAT, "version": 1, "num_features": self.num_features,
                "embedder": getattr(embedder, "name", None), "sample_rate": getattr(embedder, "sample_rate", None),
                **stats}

    def save_reference_stats(self, path: str | Path) -> None:
        """Write the real-set statistics to ``path`` (collective in DDP; only global rank 0 writes)."""
        stats = self.reference_stats()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_rank() != 0:
                return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(stats, path)
        logger.info("Saved FAD reference statistics (%d embeddings) to %s", stats["count"], path)

    def load_reference_stats(self, path: str | Path) -> None:
        """Use statistics saved by :meth:`save_reference_stats` as (part of) the real set.

        They are kept outside the metric states, so DDP reduction never counts them once per rank.
        """
        stats = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(stats, dict) or stats.get("format") != STATS_FORMAT:
            raise ValueError(f"{path} is not a FAD reference-statistics file (format {STATS_FORMAT!r}).")
        if stats["num_features"] != self.num_features:
            raise ValueError(f"{path} holds {stats['num_features']}-d statistics; this metric is "
                             f"{self.num_features}-d.")
        embedder = self.embedder
        if embedder is not None and stats.get("embedder") not in (None, embedder.name):
            raise ValueError(f"{path} was computed with embedder {stats['embedder']!r}, not {embedder.name!r}.")
        self._loaded_reference = {"sum": stats["sum"].double(), "outer": stats["outer"].double(),
                                  "count": torch.tensor(int(stats["count"]))}
