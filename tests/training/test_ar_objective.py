"""The autoregressive objective: audiocraft's per-codebook cross-entropy over valid, non-padded positions of the delay
layout, blind to invalid positions (NaN logits, any codes there), and a plain optimizer loop overfits one batch."""

import math

import pytest
import torch
import torch.nn.functional as F
from support.tiny_releases import tiny_ar

from magnet_lightning.training.objective import ar_cross_entropy, ar_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def per_codebook_reference(logits, codes, mask):
    """audiocraft's rule written out: per codebook, CE over its valid positions; then the mean over codebooks."""
    losses = [F.cross_entropy(logits[:, k][mask[:, k]], codes[:, k][mask[:, k]]) for k in range(codes.shape[1])]
    return torch.stack(losses)


def test_loss_is_the_mean_of_per_codebook_means_over_valid_positions():
    logits = torch.randn(3, 4, 7, 11)
    codes = torch.randint(0, 11, (3, 4, 7))
    mask = torch.rand(3, 4, 7) > 0.4
    mask[:, :, 0] = True
    out = ar_cross_entropy(logits, codes, mask)
    expected = per_codebook_reference(logits, codes, mask)
    torch.testing.assert_close(out.per_codebook, expected)
    torch.testing.assert_close(out.loss, expected.mean())
    # not the mean over all positions: codebooks with fewer valid positions weigh as much as the others
    assert not torch.isclose(out.loss, F.cross_entropy(logits[mask], codes[mask]))


def test_invalid_positions_get_no_loss_and_no_gradient_even_when_nan():
    logits = torch.randn(2, 4, 6, 5)
    codes = torch.randint(0, 5, (2, 4, 6))
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[:, 2, 4:] = mask[:, 3, 3:] = False
    clean = ar_cross_entropy(logits, codes, mask).loss
    poisoned = logits.clone()
    poisoned[~mask] = float("nan")
    codes_bad = codes.masked_fill(~mask, -1)
    poisoned.requires_grad_(True)
    loss = ar_cross_entropy(poisoned, codes_bad, mask).loss
    loss.backward()
    torch.testing.assert_close(loss, clean)
    assert torch.isfinite(poisoned.grad).all() and (poisoned.grad[~mask] == 0).all()


def test_model_loss_scores_the_delay_layout_and_ignores_padding():
    model = tiny_ar()
    codes = torch.randint(0, 16, (2, 4, 9))
    text, text_mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    padding = torch.ones(2, 9, dtype=torch.bool)
    padding[1, 6:] = False
    out = ar_loss(model, codes, text, text_mask, padding)
    prediction = model(codes, text, text_mask)
    mask = prediction.mask & padding[:, None, :]
    assert not mask[:, 3, 6:].any()  # stream 3 (delay 3) has no prediction for its last 3 frames
    torch.testing.assert_close(out.per_codebook, per_codebook_reference(prediction.logits, codes, mask))


def test_a_plain_optimizer_loop_overfits_one_batch():
    torch.manual_seed(0)
    model = tiny_ar().train()
    codes = torch.randint(0, 16, (4, 4, 12))
    text, text_mask = torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = ar_loss(model, codes, text, text_mask).loss
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 0.8 * math.log(16)  # starts near chance
    assert loss.item() < 0.1 * first, (first, loss.item())
