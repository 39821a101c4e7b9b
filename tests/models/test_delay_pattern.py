"""The delay pattern: the documented layout, build/revert round trips for any sorted delays, the special token exactly
where the pattern has no code, and logits read back so that code (k, t) gets the output that predicts its step."""

import pytest
import torch

from magnet_lightning.models.delay_pattern import DelayPattern

SPECIAL = 99
DELAYS = [(0, 1, 2, 3), (0, 2, 2, 5), (1, 1, 3)]


def test_layout_of_the_musicgen_delays():
    codes = torch.tensor([[[10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]]])
    sequence = DelayPattern((0, 1, 2)).build(codes, SPECIAL)
    s = SPECIAL
    expected = torch.tensor([[[s, 10, 11, 12, 13, s, s], [s, s, 20, 21, 22, 23, s], [s, s, s, 30, 31, 32, 33]]])
    assert torch.equal(sequence, expected)


@pytest.mark.parametrize("delays", DELAYS)
def test_build_then_revert_is_the_identity_and_special_tokens_are_the_invalid_positions(delays):
    pattern = DelayPattern(delays)
    codes = torch.randint(0, 50, (3, len(delays), 11))
    sequence = pattern.build(codes, SPECIAL)
    assert sequence.shape[-1] == pattern.sequence_length(11) == 11 + max(delays) + 1
    assert torch.equal(pattern.revert(sequence, 11), codes)
    valid = pattern.valid(11)
    assert torch.equal(sequence == SPECIAL, ~valid[None].expand_as(sequence))
    assert (valid.sum(-1) == 11).all()  # every code appears exactly once per stream
    assert torch.equal(pattern.build(codes, SPECIAL, length=7), sequence[..., :7])  # a prefix of the full sequence


@pytest.mark.parametrize("delays", DELAYS)
def test_reverted_logits_of_code_k_t_are_the_output_predicting_its_step(delays):
    """A causal model that outputs, at step s, the one-hot of step s + 1 is read back as exactly the codes, on the
    valid positions: output t + delay_k is the prediction of code (k, t)."""
    pattern = DelayPattern(delays)
    num_frames, vocab = 9, 50
    codes = torch.randint(0, vocab, (2, len(delays), num_frames))
    sequence = pattern.build(codes, SPECIAL, length=num_frames + 1)  # the steps 0 .. T
    next_step = sequence[..., 1:].clamp(max=vocab - 1)  # what output s (s = 0 .. T-1) should predict
    oracle = torch.nn.functional.one_hot(next_step, vocab).float()  # [B, K, T, V]
    logits, valid = pattern.revert_logits(oracle)
    assert logits.shape == (2, len(delays), num_frames, vocab)
    frames = torch.arange(num_frames)[None, :]
    assert torch.equal(valid, frames + torch.tensor(delays)[:, None] < num_frames)
    assert torch.equal(logits.argmax(-1)[:, valid], codes[:, valid])
    assert torch.isnan(logits[:, ~valid]).all() and not torch.isnan(logits[:, valid]).any()


def test_first_step_of_a_frame_is_where_decoding_starts():
    pattern = DelayPattern((0, 1, 2, 3))
    assert pattern.first_step(0) == 1 and pattern.first_step(7) == 8
    assert DelayPattern((2, 3)).first_step(0) == 3


@pytest.mark.parametrize("delays", [(), (1, 0), (-1, 0)])
def test_bad_delays_are_refused(delays):
    with pytest.raises(ValueError, match="delays"):
        DelayPattern(delays)


def test_short_sequence_cannot_be_reverted_and_wrong_codebook_count_is_named():
    pattern = DelayPattern((0, 1, 2, 3))
    with pytest.raises(ValueError, match="does not hold"):
        pattern.revert(torch.zeros(1, 4, 10, dtype=torch.long), 8)
    with pytest.raises(ValueError, match=r"\[B, 4"):
        pattern.build(torch.zeros(1, 3, 5, dtype=torch.long), SPECIAL)
