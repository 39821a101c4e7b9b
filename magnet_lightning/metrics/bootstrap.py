"""Bootstrap 95 % intervals of corpus-level figures, resampling the evaluation items (paired) with replacement.

A resample draws n item indices with replacement (``numpy.random.default_rng(seed)``) and gives each item its count
w_c; every figure is recomputed as if the drawn items had been evaluated: a reference clip and its generated clip
always go together. The interval is the 2.5th and 97.5th percentiles of the resampled values.

Per figure (frames of an item are contiguous rows; c items, F frames):
- CLAP: Σ w_c s_c / Σ w_c; KL: Σ w_c (Σ of the item's segment KLs) / Σ w_c (number of its segments);
- FAD: both Gaussians from frame sums weighted by their item's count;
- KAD: from item-by-item kernel block sums S[c, c'] (computed once, at the full set's bandwidth):
  (wᵀ S_xx w − w·diag_x) / (m(m−1)) + (wᵀ S_yy w − w·diag_y) / (n(n−1)) − 2 wᵀ S_xy w / (m n), ×100;
- FAD∞: the frames of the drawn items, repeated, go through `fad_inf` again (costly: its own resample count).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .fad import frechet_distance, gaussian_from_sums
from .fad_inf import fad_inf
from .kad import BLOCK, KERNELS, SCALE, _sq_dists

LEVEL = 0.95


def resample_counts(num_items: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, num_items] counts of each item in each resample (each row sums to num_items)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_items, size=(resamples, num_items))
    return np.stack([np.bincount(row, minlength=num_items) for row in draws]) if resamples else np.zeros((0, num_items))


def interval(values: Sequence[float], level: float = LEVEL) -> list[float] | None:
    """The percentile interval [low, high] of the resampled values (None when there are none)."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap(statistic: Callable[[np.ndarray], float], counts: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The interval of ``statistic(weights [num_items])`` over the rows of ``counts``."""
    return interval([statistic(row) for row in counts], level)


def item_of_frames(frames: Sequence[Tensor]) -> Tensor:
    """Item index of every row of the concatenated frames [sum F_c] (frames[c] is [F_c, D])."""
    return torch.cat([torch.full((f.shape[0],), c, dtype=torch.long) for c, f in enumerate(frames)])


def weighted_fad(ref: Tensor, ref_items: Tensor, gen: Tensor, gen_items: Tensor, weights: np.ndarray) -> float:
    """FAD with every frame counted as often as its item was drawn (ref/gen: [F, D] float64 rows)."""
    w = torch.as_tensor(weights, dtype=torch.float64, device=ref.device)
    stats = []
    for rows, items in ((ref, ref_items), (gen, gen_items)):
        fw = w[items]
        total, outer = (rows * fw[:, None]).sum(0), (rows * fw[:, None]).T @ rows
        stats.append(gaussian_from_sums(total, outer, int(round(float(fw.sum())))))
    return float(frechet_distance(*stats[0], *stats[1]))


def kernel_blocks(a: Tensor, a_items: Tensor, b: Tensor, b_items: Tensor, num_items: int, kernel: str,
                  bandwidth: float, block: int = BLOCK) -> Tensor:
    """S[c, c'] = Σ of k(a_f, b_g) over the frames f of item c and g of item c' ([num_items, num_items] float64)."""
    gamma, fn = 1.0 / (2.0 * bandwidth * bandwidth + 1e-8), KERNELS[kernel]
    sums = torch.zeros(num_items, num_items, dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], block):
        rows = a_items[i:i + block]
        for j in range(0, b.shape[0], block):
            k = fn(_sq_dists(a[i:i + block], b[j:j + block]), gamma)
            cols = b_items[j:j + block]
            by_row = torch.zeros(num_items, k.shape[1], dtype=torch.float64, device=a.device).index_add_(0, rows, k)
            sums.index_add_(1, cols, by_row)
    return sums


class KADBootstrap:
    """Item-level kernel sums of reference x and evaluated y frames, for KAD under item weights."""

    def __init__(self, ref: Tensor, ref_items: Tensor, gen: Tensor, gen_items: Tensor, num_items: int,
                 bandwidth: float, kernel: str = "gaussian") -> None:
        gamma, fn = 1.0 / (2.0 * bandwidth * bandwidth + 1e-8), KERNELS[kernel]
        self.s_xx = kernel_blocks(ref, ref_items, ref, ref_items, num_items, kernel, bandwidth)
        self.s_yy = kernel_blocks(gen, gen_items, gen, gen_items, num_items, kernel, bandwidth)
        self.s_xy = kernel_blocks(ref, ref_items, gen, gen_items, num_items, kernel, bandwidth)
        self_k = fn(torch.zeros(1, dtype=torch.float64), gamma)  # k(a, a), the diagonal kadtk removes
        zeros = torch.zeros(num_items, dtype=torch.float64)
        self.diag_x = zeros.index_add(0, ref_items.cpu(), self_k.expand(ref.shape[0]).contiguous())
        self.diag_y = zeros.index_add(0, gen_items.cpu(), self_k.expand(gen.shape[0]).contiguous())
        self.frames_x = torch.bincount(ref_items.cpu(), minlength=num_items).double()
        self.frames_y = torch.bincount(gen_items.cpu(), minlength=num_items).double()

    def __call__(self, weights: np.ndarray) -> float:
        w = torch.as_tensor(weights, dtype=torch.float64)
        m, n = float(w @ self.frames_x), float(w @ self.frames_y)
        if m < 2 or n < 2:
            return float("nan")
        on = w.to(self.s_xx.device)
        quad = [float(on @ s @ on) for s in (self.s_xx, self.s_yy, self.s_xy)]
        xx = (quad[0] - float(w @ self.diag_x)) / (m * (m - 1))
        yy = (quad[1] - float(w @ self.diag_y)) / (n * (n - 1))
        return (xx + yy - 2.0 * quad[2] / (m * n)) * SCALE


def fad_inf_resampled(ref: Tensor, ref_items: Tensor, gen: Tensor, gen_items: Tensor, weights: np.ndarray,
                      steps: int, min_n: int, seed: int) -> float:
    """FAD∞ of one resample: the drawn items' frames (repeated by their counts) on both sides."""
    w = torch.as_tensor(weights, dtype=torch.long, device=ref.device)
    ref_rows = torch.repeat_interleave(ref, w[ref_items], dim=0)
    gen_rows = torch.repeat_interleave(gen, w[gen_items], dim=0)
    mu = ref_rows.mean(0)
    cov = (ref_rows - mu).T @ (ref_rows - mu) / (ref_rows.shape[0] - 1)
    return fad_inf(mu, cov, gen_rows, steps, min(min_n, gen_rows.shape[0]), seed).score
