"""The loss scores only the stage's masked, non-padded positions, of that stage's codes."""

import torch
import torch.nn.functional as F

from magnet_lightning.training.masking import mask_codes
from magnet_lightning.training.objective import masked_cross_entropy, stage_targets


def test_loss_ignores_unscored_positions():
    logits = torch.randn(2, 6, 5)
    targets = torch.randint(0, 5, (2, 6))
    scored = torch.zeros(2, 6, dtype=torch.bool)
    scored[0, 1] = scored[1, 4] = True
    loss = masked_cross_entropy(logits, targets, scored)
    expected = F.cross_entropy(logits[scored], targets[scored])
    assert torch.allclose(loss, expected)
    noisy = logits.clone()
    noisy[~scored] = torch.randn_like(noisy[~scored]) * 10  # anything outside the mask must not matter
    assert torch.allclose(masked_cross_entropy(noisy, targets, scored), loss)


def test_loss_gradient_only_reaches_scored_positions():
    logits = torch.randn(1, 4, 3, requires_grad=True)
    scored = torch.tensor([[True, False, True, False]])
    masked_cross_entropy(logits, torch.zeros(1, 4, dtype=torch.long), scored).backward()
    assert (logits.grad[0, ~scored[0]] == 0).all() and (logits.grad[0, scored[0]] != 0).any()


def test_nothing_scored_gives_zero_not_nan():
    loss = masked_cross_entropy(torch.randn(1, 3, 4), torch.zeros(1, 3, dtype=torch.long),
                                torch.zeros(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0


def test_targets_are_each_samples_stage_and_padding_is_never_scored():
    codes = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert torch.equal(stage_targets(codes, 1), codes[:, 1])
    assert torch.equal(stage_targets(codes, torch.tensor([2, 0])), torch.stack([codes[0, 2], codes[1, 0]]))
    spans = torch.ones(2, 4, dtype=torch.bool)
    padding = torch.tensor([[True, True, False, False], [True] * 4])
    assert torch.equal(mask_codes(codes, torch.tensor([0, 1]), spans, 99, padding).loss_mask, padding)
