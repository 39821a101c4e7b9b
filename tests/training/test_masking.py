"""Span masking: LUT against the closed form, empirical coverage, span lengths, stage corruption."""

from fractions import Fraction
from math import comb

import pytest
import torch

from magnet_lightning.training.masking import (
    cosine_schedule,
    draw_stages,
    expected_span_coverage,
    mask_codes,
    sample_training_masks,
    span_count_lut,
    span_mask,
)


def exact_coverage(seq_len: int, span_len: int, u: int) -> float:
    return float(1 - Fraction(comb(seq_len - span_len, u), comb(seq_len, u)))


@pytest.mark.parametrize("seq_len,span_len", [(500, 3), (97, 5), (40, 1)])
def test_coverage_matches_binomial_closed_form(seq_len, span_len):
    cov = expected_span_coverage(seq_len, span_len)
    for u in [0, 1, 2, 7, seq_len // 3, seq_len // 2, seq_len - span_len, seq_len - 1]:
        assert cov[u].item() == pytest.approx(exact_coverage(seq_len, span_len, u), abs=1e-12)


def test_lut_is_smallest_count_reaching_each_rate():
    seq_len, span_len = 500, 3
    lut = span_count_lut(seq_len, span_len)
    for p in range(1, 101):
        u = lut[p].item()
        assert exact_coverage(seq_len, span_len, u) >= p / 100 - 1e-12
        assert u == 0 or exact_coverage(seq_len, span_len, u - 1) < p / 100
    assert torch.all(lut[1:] >= lut[:-1])
    # Values quoted by magnet_spec.md §4 for the reference's table.
    assert [lut[p].item() for p in (10, 50, 90, 100)] == [18, 103, 268, 498]
    assert span_count_lut(1500, 3)[50].item() == 310


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.8, 0.95])
def test_empirical_coverage_within_one_percent(rate):
    g = torch.Generator().manual_seed(1)
    masks = span_mask(torch.full((4000,), rate), 500, 3, g)
    assert masks.float().mean().item() == pytest.approx(rate, abs=0.01)


def test_spans_are_at_least_span_len_except_at_the_end():
    g = torch.Generator().manual_seed(2)
    masks = span_mask(torch.rand(256), 200, 4, g)
    for row in masks:
        runs, n = [], 0
        for v in row.tolist() + [False]:
            if v:
                n += 1
            elif n:
                runs.append(n)
                n = 0
        ends_at_edge = bool(row[-1])
        inner = runs[:-1] if ends_at_edge else runs
        assert all(r >= 4 for r in inner)
        assert row.any()  # at least one span even at rate 0


def test_span_len_one_masks_exact_count():
    masks = span_mask(torch.tensor([0.0, 0.25, 1.0]), 40, 1)
    assert masks.sum(1).tolist() == [1, 10, 40]


def test_cosine_schedule_endpoints():
    assert cosine_schedule(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([1.0, 0.0], abs=1e-7)


def test_mask_codes_corrupts_stage_and_above_only():
    codes = torch.randint(0, 16, (3, 4, 10))
    spans = torch.zeros(3, 10, dtype=torch.bool)
    spans[:, 2:5] = True
    padding = torch.ones(3, 10, dtype=torch.bool)
    padding[:, 4:] = False
    out = mask_codes(codes, torch.tensor([0, 1, 3]), spans, 16, padding)
    for b, k in enumerate([0, 1, 3]):
        assert torch.equal(out.inputs[b, :k], codes[b, :k])  # lower stages are ground truth
        assert (out.inputs[b, k + 1 :] == 16).all()  # higher stages fully masked
        assert (out.inputs[b, k, 2:5] == 16).all()
        assert torch.equal(out.inputs[b, k, 5:], codes[b, k, 5:])
    assert out.loss_mask[:, 2:4].all() and not out.loss_mask[:, 4:].any()  # padding is never scored


def test_stage_draws_per_batch_and_per_sample():
    g = torch.Generator().manual_seed(0)
    one = draw_stages(8, 4, per_sample=False, generator=g)
    assert (one == one[0]).all()
    many = torch.cat([draw_stages(64, 4, per_sample=True, generator=g) for _ in range(20)])
    counts = torch.bincount(many, minlength=4).float() / many.numel()
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.03)
    weighted = draw_stages(1000, 4, per_sample=True, generator=g, weights=[0, 0, 1, 0])
    assert (weighted == 2).all()


def test_sample_training_masks_is_seeded():
    codes = torch.randint(0, 8, (5, 4, 30))
    stages = torch.tensor([0, 1, 2, 3, 1])
    a = sample_training_masks(codes, stages, 8, 3, generator=torch.Generator().manual_seed(3))
    b = sample_training_masks(codes, stages, 8, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.loss_mask, b.loss_mask)
