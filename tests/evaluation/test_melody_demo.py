"""The melody demo's measure (evaluation/melody_demo.py), on tokens whose pitch class is known: the token -> chroma
lookup fitted on shards recovers each token's pitch class, and `token_chroma` scores tokens that follow a melody 1
against that melody, near chance against a shuffled one or the same melody a few chroma frames late."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from support.paths import ROOT
from support.token_data import INFO, npy, write_dataset

from magnet_lightning.models.melody import frame_indices

FRAME_RATE, CHROMA_RATE, V, CLASSES = 50.0, 32000 / 4096, 64, 12


@pytest.fixture(scope="module")
def melody_demo():
    spec = importlib.util.spec_from_file_location("melody_demo", ROOT / "evaluation" / "melody_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _following(classes: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """First-codebook tokens [frames] following chroma classes [Tc]: at each frame a token of the pitch class of the
    chroma frame nearest in time (tokens c, c + 12, c + 24, c + 36 stand for class c; 48.. are never used)."""
    index = frame_indices(frames, FRAME_RATE, CHROMA_RATE, len(classes))[0].numpy()
    return classes[index] + CLASSES * rng.integers(0, 4, frames)


def _tracks(count: int, seed: int, frames: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(classes [count, Tc], tokens [count, 4, frames]) of tracks whose first codebook follows their chroma."""
    rng = np.random.default_rng(seed)
    rows = int(frames / FRAME_RATE * CHROMA_RATE) + 1
    classes = rng.integers(0, CLASSES, (count, rows))
    codes = rng.integers(0, V, (count, 4, frames))
    codes[:, 0] = np.stack([_following(c, frames, rng) for c in classes])
    return classes, codes


def _shards(root, classes: np.ndarray, codes: np.ndarray):
    samples = []
    for i, (cls, code) in enumerate(zip(classes, codes)):
        meta = {"caption": f"track {i}", "metadata": {}, "num_frames": code.shape[-1]}
        samples.append((f"k{i}", {"codes.npy": npy(code.astype(np.int16)), "json": json.dumps(meta).encode(),
                                  "chroma.npy": npy(np.eye(CLASSES, dtype=np.float16)[cls])}))
    return write_dataset(root, [samples], INFO)


def test_token_chroma_tells_the_given_melody_from_a_shuffled_or_late_one(tmp_path, melody_demo):
    train = _shards(tmp_path / "train", *_tracks(6, seed=0))
    table = melody_demo.token_chroma_table(str(train), FRAME_RATE, CHROMA_RATE, CLASSES, V)
    assert table.shape == (V, CLASSES)
    assert (table[:48].argmax(-1) == torch.arange(48) % CLASSES).all()  # each used token's pitch class

    classes, codes = _tracks(4, seed=1)
    melody = torch.nn.functional.one_hot(torch.from_numpy(classes), CLASSES).float()  # [B, Tc, C]
    tokens = torch.from_numpy(codes)

    def score(chroma):
        return melody_demo.token_chroma_score(tokens, chroma, table, FRAME_RATE, CHROMA_RATE)

    assert score(melody) == pytest.approx(1.0)
    assert score(melody.roll(1, 0)) < 0.3  # another track's melody: chance is 1/12
    assert score(melody.roll(3, 1)) < 0.3  # the same melody three chroma frames (0.38 s) late
