"""Loudness normalisation to -14 LUFS (BS.1770 via pyloudnorm)."""
import logging
import math

import pytest
import torch

from magnet_lightning.metrics import integrated_loudness, loudness_normalize

SR = 16000


def tone(amplitude, seconds=2.0, channels=2):
    t = torch.arange(int(SR * seconds)) / SR
    return (amplitude * torch.sin(2 * math.pi * 440 * t)).expand(channels, -1).clone()


def test_normalised_clips_measure_target_loudness():
    batch = torch.stack([tone(0.01), tone(0.5), tone(0.1) + 0.05 * torch.randn(2, 2 * SR)])
    out = loudness_normalize(batch, SR)
    assert out.shape == batch.shape
    for clip in out:
        assert integrated_loudness(clip, SR) == pytest.approx(-14.0, abs=0.05)
    single = loudness_normalize(tone(0.3), SR, target_lufs=-23.0)
    assert integrated_loudness(single, SR) == pytest.approx(-23.0, abs=0.05)


def test_gain_is_a_pure_scale():
    clip = tone(0.2) + 0.01 * torch.randn(2, 2 * SR)
    out = loudness_normalize(clip, SR)
    ratio = out / clip
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)


def test_silent_and_short_clips_are_left_unchanged_and_counted(caplog):
    batch = torch.stack([torch.zeros(1, 2 * SR), tone(0.1, channels=1)])
    with caplog.at_level(logging.WARNING):
        out = loudness_normalize(batch, SR)
    assert torch.equal(out[0], batch[0]) and not torch.equal(out[1], batch[1])
    assert "1 of 2 clips unchanged" in caplog.text
    short = tone(0.1, seconds=0.2, channels=1)
    assert torch.equal(loudness_normalize(short, SR), short)
    with pytest.raises(ValueError, match="at least"):
        integrated_loudness(short, SR)


def test_peak_normalize_sets_peak_and_keeps_silence():
    from magnet_lightning.metrics import peak_normalize

    batch = torch.stack([tone(0.3), torch.zeros(2, 2 * SR)])
    out = peak_normalize(batch, peak_db=-1.0)
    assert out[0].abs().max().item() == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    assert torch.equal(out[1], batch[1])
