"""FAD∞: FAD extrapolated to an infinite evaluated set, as fadtk computes it (Gui et al. 2024).

FAD is biased upwards by a term ∝ 1/n. For ``steps`` sizes n evenly spaced from ``min_n`` to the number of evaluated
embeddings N (``int(numpy.linspace(min_n, N, steps))``), n rows of the evaluated set are drawn with replacement
(``RandomState(seed).choice``: the same draws as fadtk after ``numpy.random.seed(seed)``), their FAD against the
reference Gaussian is computed, and a line FAD = slope / n + intercept is fitted (``numpy.polyfit``): FAD∞ is the
intercept. fadtk's defaults: 25 steps, min_n 500.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .fad import frechet_distance
from .kad import as_rows

STEPS, MIN_N = 25, 500


@dataclass
class FADInf:
    """FAD∞ (``score``), the fitted slope, the fit's R² and the (n, FAD) points it was fitted on."""

    score: float
    slope: float
    r2: float
    points: list[tuple[int, float]] = field(default_factory=list)


def gaussian(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] (``numpy.cov(rowvar=False)``) of rows [n, D], float64."""
    mu = rows.mean(0)
    centred = rows - mu
    return mu, centred.T @ centred / (rows.shape[0] - 1)


def fad_inf(reference_mu: Tensor, reference_cov: Tensor, evaluated: Tensor | np.ndarray, steps: int = STEPS,
            min_n: int = MIN_N, seed: int | np.random.RandomState = 0) -> FADInf:
    """FAD∞ of ``evaluated`` [N, D] (or [N, F, D]) against N(``reference_mu`` [D], ``reference_cov`` [D, D])."""
    rows = as_rows(evaluated, "evaluated")
    total = rows.shape[0]
    if steps < 2:
        raise ValueError(f"FAD-inf needs at least 2 steps, got {steps}")
    if not 2 <= min_n <= total:
        raise ValueError(f"FAD-inf: min_n={min_n} must be between 2 and the {total} evaluated embeddings")
    rng = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    ns = [int(n) for n in np.linspace(min_n, total, steps)]
    points = []
    for n in ns:
        index = torch.from_numpy(rng.choice(total, size=n, replace=True)).to(rows.device)
        mu, cov = gaussian(rows[index])
        points.append((n, float(frechet_distance(reference_mu, reference_cov, mu, cov))))
    xs, ys = 1.0 / np.array(ns, dtype=np.float64), np.array([p[1] for p in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    r2 = 1.0 - np.sum((ys - (slope * xs + intercept)) ** 2) / np.sum((ys - ys.mean()) ** 2)
    return FADInf(float(intercept), float(slope), float(r2), points)
