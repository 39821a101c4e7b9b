"""Kernel Audio Distance (KAD): the unbiased squared MMD between two embedding sets, as kadtk defines it.

    KAD = 100 · ( mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 · mean_{i,j} k(x_i, y_j) )

x: the reference set [M, D], y: the evaluated set [N, D] (frames of every clip, as FAD uses them). The default
kernel is Gaussian, k(a, b) = exp(−γ‖a − b‖²) with γ = 1 / (2·bw² + 1e-8), and the bandwidth bw is the median
pairwise distance of the evaluated set (``torch.median`` of ``torch.pdist``: the lower median). kadtk's other
kernels, inverse quadratic ``iq`` 1 / (1 + γd²) and inverse multiquadric ``imq`` 1 / sqrt(1 + γd²), are here too.

Computed in float64 by blocks, so the memory is O(block²) whatever the set sizes (kadtk builds the whole [N, N]
matrices in float32); the median is exact too (a histogram narrows the range, then the values in the median's bin are
selected). :class:`KernelAudioDistance` is the torchmetric: its states are the embeddings themselves (gathered from
every rank, then put in a canonical row order), so the distributed value is the one-process value.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

SCALE = 100.0
EPS = 1e-8
BLOCK = 2048
DIRECT_MEDIAN = 20_000_000  # up to this many pairs the distances are materialised at once
KERNELS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "gaussian": lambda d2, gamma: torch.exp(-gamma * d2),
    "iq": lambda d2, gamma: 1.0 / (1.0 + gamma * d2),
    "imq": lambda d2, gamma: torch.rsqrt(1.0 + gamma * d2),
}


def as_rows(x: Tensor | np.ndarray, name: str = "embeddings") -> Tensor:
    """[N, D] or [N, F, D] (frames of clips) -> float64 rows [M, D]; rejects other shapes and non-finite values."""
    x = torch.as_tensor(x)
    if x.dim() == 3:
        x = x.reshape(-1, x.shape[-1])
    if x.dim() != 2:
        raise ValueError(f"{name}: expected [N, D] or [N, F, D], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: embeddings contain NaN or inf values")
    return x.detach().double()


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """‖a_i − b_j‖² [M, N] by the expansion kadtk uses (|a|² + |b|² − 2 a·b), clamped at 0."""
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


def _upper_distances(x: Tensor, i: int, j: int, block: int) -> Tensor:
    """Distances of the pairs (p < q) in block rows [i, i+block) x block columns [j, j+block), flattened."""
    d = _sq_dists(x[i:i + block], x[j:j + block]).sqrt()
    if i == j:
        d = d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)]
    return d.reshape(-1)


def _pair_blocks(n: int, block: int):
    for i in range(0, n, block):
        for j in range(i, n, block):
            yield i, j


def median_pairwise_distance(x: Tensor | np.ndarray, block: int = BLOCK) -> float:
    """The lower median of the n(n−1)/2 pairwise Euclidean distances of x [n, D] (``torch.median(torch.pdist(x))``).
    """
    x = as_rows(x)
    n = x.shape[0]
    pairs = n * (n - 1) // 2
    if pairs < 1:
        raise ValueError(f"the median pairwise distance needs at least 2 embeddings, got {n}")
    k = (pairs - 1) // 2  # 0-based rank of the lower median
    if pairs <= DIRECT_MEDIAN:
        return float(torch.pdist(x).kthvalue(k + 1).values)
    top = max(float(_upper_distances(x, i, j, block).max()) for i, j in _pair_blocks(n, block))
    lo, hi, below, inside = 0.0, top * (1 + 1e-9) + 1e-300, 0, pairs
    while inside > DIRECT_MEDIAN:
        if hi - lo <= 1e-12 * hi:  # a bin of (numerically) equal distances: the median is its value
            return lo
        lo, hi, below, inside = _narrow(x, block, lo, hi, below, k)
    values = torch.cat([d[(d >= lo) & (d < hi)] for i, j in _pair_blocks(n, block)
                        for d in (_upper_distances(x, i, j, block),)])
    return float(values.kthvalue(k - below + 1).values)


def _narrow(x: Tensor, block: int, lo: float, hi: float, below: int, k: int,
            bins: int = 65536) -> tuple[float, float, int, int]:
    """One histogram pass over [lo, hi): the bin holding the k-th distance, the count below it and inside it."""
    edges = lo + (hi - lo) / bins * torch.arange(bins + 1, dtype=torch.float64, device=x.device)
    edges[0], edges[-1] = lo, hi  # the same floats the next pass filters with
    counts = torch.zeros(bins, dtype=torch.long, device=x.device)
    for i, j in _pair_blocks(x.shape[0], block):
        d = _upper_distances(x, i, j, block)
        d = d[(d >= lo) & (d < hi)]
        counts += torch.bincount(torch.bucketize(d, edges, right=True) - 1, minlength=bins)[:bins]
    cumulative = below + counts.cumsum(0)
    b = int(torch.searchsorted(cumulative, torch.tensor(k, dtype=torch.long, device=x.device), right=True))
    return float(edges[b]), float(edges[b + 1]), below + int(counts[:b].sum()), int(counts[b])


def _kernel_sum(a: Tensor, b: Tensor | None, kernel: Callable, gamma: float, block: int) -> float:
    """Σ k(a_i, b_j) over all pairs, or with b None: Σ_{i≠j} k(a_i, a_j) (the computed diagonal subtracted)."""
    other = a if b is None else b
    total = 0.0
    for i in range(0, a.shape[0], block):
        for j in range(0, other.shape[0], block):
            k = kernel(_sq_dists(a[i:i + block], other[j:j + block]), gamma)
            total += float(k.sum())
            if b is None and i == j:
                total -= float(k.diagonal().sum())
    return total


def kernel_audio_distance(reference: Tensor | np.ndarray, evaluated: Tensor | np.ndarray,
                          bandwidth: float | None = None, kernel: str = "gaussian", block: int = BLOCK) -> Tensor:
    """KAD between ``reference`` [M, D] and ``evaluated`` [N, D] (or [N, F, D]); float64 scalar tensor (×100).

    ``bandwidth`` None: the median pairwise distance of ``evaluated`` (kadtk's default)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    x, y = as_rows(reference, "reference"), as_rows(evaluated, "evaluated").to(as_rows(reference).device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"reference is {x.shape[1]}-d but evaluated is {y.shape[1]}-d")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"KAD needs at least 2 embeddings per set, got {m} reference and {n} evaluated")
    bw = median_pairwise_distance(y, block) if bandwidth is None else float(bandwidth)
    gamma = 1.0 / (2.0 * bw * bw + EPS)
    fn = KERNELS[kernel]
    xx = _kernel_sum(x, None, fn, gamma, block) / (m * (m - 1))
    yy = _kernel_sum(y, None, fn, gamma, block) / (n * (n - 1))
    xy = _kernel_sum(x, y, fn, gamma, block) / (m * n)
    return torch.tensor((xx + yy - 2.0 * xy) * SCALE, dtype=torch.float64)


def canonical_order(x: Tensor) -> Tensor:
    """Rows [M, D] sorted lexicographically: the same set gives the same tensor whatever order the ranks sent it."""
    if x.shape[0] < 2:
        return x
    order = np.lexsort(x.cpu().numpy().T[::-1])
    return x[torch.from_numpy(order.copy()).to(x.device)]


class KernelAudioDistance(Metric):
    """KAD between reference and evaluated embeddings; exact across ranks (the rows are gathered, not averaged).

    ``update(x [N, D] or [N, F, D], real: bool)``. ``reference`` (an [M, D] tensor, e.g. from cached reference
    statistics) is used as (part of) the reference set; it is kept outside the states, so ranks never count it
    twice. ``bandwidth`` None: the median pairwise distance of the evaluated set.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, bandwidth: float | None = None, kernel: str = "gaussian", reference: Tensor | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        self.bandwidth, self.kernel = bandwidth, kernel
        self.add_state("real", default=[], dist_reduce_fx="cat")
        self.add_state("fake", default=[], dist_reduce_fx="cat")
        self._reference = None if reference is None else as_rows(reference, "reference")

    def set_reference(self, reference: Tensor | None) -> None:
        self._reference = None if reference is None else as_rows(reference, "reference")

    def update(self, x: Tensor, real: bool) -> None:
        if not isinstance(real, bool):
            raise TypeError("update(embeddings, real) needs real=True (reference) or False (evaluated).")
        (self.real if real else self.fake).append(as_rows(x))

    def compute(self) -> Tensor:
        real = dim_zero_cat(self.real) if len(self.real) else None
        if self._reference is not None:
            loaded = self._reference.to(real.device if real is not None else self._reference.device)
            real = loaded if real is None else torch.cat([loaded, real])
        if real is None or not len(self.fake):
            raise RuntimeError("KernelAudioDistance.compute() needs reference and evaluated embeddings")
        fake = dim_zero_cat(self.fake)
        return kernel_audio_distance(canonical_order(real), canonical_order(fake), self.bandwidth,
                                     self.kernel).float()
