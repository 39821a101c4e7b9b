"""Audio folders for the tokenizer tests: varied clips at a rate the codecs must resample from, the options of
a small tokenizer run, and a reader of the shards it writes."""

import json
import math
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from magnet_lightning.data.tokenize import TokenizeOptions

SR = 22050  # not the codecs' rate: the tokenizer must resample
OPTS = TokenizeOptions(samples_per_shard=3, batch_size=2, num_workers=0, progress=False)


def make_audio_folder(root: Path) -> Path:
    """5 good tracks (sweeps of several lengths, stereo noise), 1 corrupt, 1 silent, 1 too short."""
    root.mkdir(parents=True)
    for i in range(4):
        t = np.arange(int(SR * (1.2 + 0.7 * i))) / SR
        sweep = 0.5 * np.sin(2 * math.pi * (150 + 400 * i) * t * (1 + t))
        sf.write(root / f"sweep.{i}.wav", sweep.astype(np.float32), SR)
        (root / f"sweep.{i}.json").write_text(json.dumps({"description": f"sweep {i}", "genre": "test", "bpm": 60 + i}))
    (root / "sub").mkdir()
    sf.write(root / "sub" / "noise.flac", (0.2 * np.random.default_rng(0).standard_normal((SR * 2, 2))), SR)
    (root / "sub" / "noise.txt").write_text("stereo noise\n")
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    sf.write(root / "silent.wav", np.zeros(SR * 2, np.float32), SR)
    sf.write(root / "short.wav", 0.3 * np.ones(SR // 10, np.float32), SR)
    return root


def read_tar(path):
    samples = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples
