"""Fixtures of tests/evaluation/: `assets`, a tiny 16-kHz checkpoint with its codec, reference clips and a captions
CSV (this folder's `assets` overrides the generation one of support/tiny_generator.py); `audiocaps`, an
AudioCaps-format download."""

import numpy as np
import pytest
import soundfile
import torch
from support.evaluation import RATE, tone, write_csv
from support.helpers import TINY_MODEL, tiny_module
from support.metric_assets import save_tiny_codec

from magnet_lightning.metrics.benchmarks.formats import BENCHMARKS


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    codec_dir = save_tiny_codec(root / "codec")
    module = tiny_module(codec=codec_dir, sample_rate=RATE, frame_rate=50.0, segment_duration=1.2,
                         decoding={"decoding_steps": [2, 1, 1, 1]})
    assert module.model_cfg.codebook_size == TINY_MODEL["codebook_size"]
    ckpt = root / "tiny.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    rows = ["ytid,caption"]
    for i in range(3):  # references at 32 kHz, 1.1-1.3 s: resampled to the codec's 16 kHz
        seconds = 1.1 + 0.1 * i
        t = np.arange(int(32000 * seconds)) / 32000
        wav = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.02 * rng.standard_normal(t.shape)
        soundfile.write(audio / f"clip{i}.wav", wav.astype(np.float32), 32000)
        rows.append(f'clip{i},"a tone, number {i}"')
    csv = root / "captions.csv"
    csv.write_text("\n".join(rows) + "\n")
    return root, ckpt, csv, audio


@pytest.fixture
def audiocaps(assets, tmp_path):
    """An AudioCaps-format download of three already-cut 1.2-s clips at 16 kHz (the tiny codec's rate)."""
    data = tmp_path / "audiocaps"
    data.mkdir()
    rows = []
    for i in range(3):
        tone(data / f"yt{i}.wav", 1.2, 16000, freq=200.0 + 90 * i)
        rows.append([100 + i, f"yt{i}", 30, f"a tone number {i}"])
    write_csv(data / "test.csv", BENCHMARKS["audiocaps"].columns, rows)
    return assets[1], data
