"""KL divergence between classifier label distributions of generated and reference audio, paired by clip.

For each pair, KL(ref ‖ gen) = Σ_c p_ref(c) · (log p_ref(c) − log(p_gen(c) + 1e-6)) — the reference protocol's
direction and epsilon — averaged over pairs. States are float64 sums plus a count, so ranks reduce exactly.
With a classifier embedder that splits clips into chunks (PaSST: ≤ 10/20/30 s), each chunk is one pair.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric

from .embedders.base import AudioEmbedder, EmbedderHolder

EPS = 1e-6


def kl_ref_gen(reference: Tensor, generated: Tensor, eps: float = EPS) -> Tensor:
    """Per-row KL(reference ‖ generated) for probability rows [M, C] -> [M] (float64)."""
    p, q = reference.double(), generated.double()
    return (torch.xlogy(p, p) - p * torch.log(q + eps)).sum(-1)


def _check_probabilities(x: Tensor, name: str) -> Tensor:
    """[N, C] or [N, F, C] probabilities -> [M, C]; rejects logits, negative values and non-finite entries."""
    rows = x.reshape(-1, x.shape[-1]) if x.dim() == 3 else x
    if rows.dim() != 2:
        raise ValueError(f"{name}: expected probabilities [N, C] or [N, F, C], got {tuple(x.shape)}.")
    if not torch.isfinite(rows).all() or (rows < 0).any():
        raise ValueError(f"{name}: probabilities must be finite and non-negative (pass softmax outputs, not logits).")
    sums = rows.double().sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ValueError(f"{name}: rows must sum to 1 (got sums in [{sums.min():.4f}, {sums.max():.4f}]).")
    return rows.detach()


class KLDivergence(Metric):
    """Mean KL(reference ‖ generated) over paired clips.

    Without an embedder: ``update(generated [N, C], reference [N, C])`` with probability rows.
    With a classifier embedder (``kind == "probabilities"``): ``update(generated_wav [N, C, L],
    reference_wav [N, C', L'], sample_rate)``; both clips must give the same number of chunks.
    ``direction``: "ref_gen" (default, the paper's KL), "gen_ref" (reverse) or "both" (their sum).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, embedder: AudioEmbedder | None = None,
                 direction: Literal["ref_gen", "gen_ref", "both"] = "ref_gen", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if embedder is not None and embedder.kind != "probabilities":
            raise ValueError(f"KLDivergence needs a classifier embedder (kind 'probabilities'), got {embedder.name}.")
        if direction not in ("ref_gen", "gen_ref", "both"):
            raise ValueError(f"direction must be 'ref_gen', 'gen_ref' or 'both', got {direction!r}.")
        self._holder = EmbedderHolder(embedder)
        self.direction = direction
        self.add_state("kl_ref_gen_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("kl_gen_ref_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @property
    def embedder(self) -> AudioEmbedder | None:
        return self._holder.get()

    def update(self, generated: Tensor, reference: Tensor, sample_rate: int | None = None) -> None:
        embedder = self.embedder
        if embedder is not None:
            if sample_rate is None:
                raise TypeError("With a classifier, call update(generated_wav, reference_wav, sample_rate).")
            generated = embedder.embed_frames(generated, sample_rate)
            reference = embedder.embed_frames(reference, sample_rate)
        gen = _check_probabilities(generated, "generated")
        ref = _check_probabilities(reference, "reference")
        if gen.shape != ref.shape:
            raise ValueError(f"generated {tuple(gen.shape)} and reference {tuple(ref.shape)} rows do not pair up "
                             "(same clip count, chunk count and classes needed).")
        device = self.count.device
        self.kl_ref_gen_sum += kl_ref_gen(ref, gen).sum().to(device)
        self.kl_gen_ref_sum += kl_ref_gen(gen, ref).sum().to(device)
        self.count += gen.shape[0]

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise RuntimeError("KLDivergence.compute() called before any update.")
        sums = {"ref_gen": self.kl_ref_gen_sum, "gen_ref": self.kl_gen_ref_sum,
                "both": self.kl_ref_gen_sum + self.kl_gen_ref_sum}
        return (sums[self.direction] / self.count).float()
