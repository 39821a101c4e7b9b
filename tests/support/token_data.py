"""Token shards written in memory for the data tests (a fixture plugin, see tests/conftest.py): samples, a dataset
of shards with its manifest (`dataset`), and a TokenDataModule over them."""

import io
import json

import numpy as np
import pytest

from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.shards import TarShardWriter, write_manifest

K, V, RATE = 4, 64, 50.0
INFO = {"name": "synthetic", "sample_rate": 16000, "frame_rate": RATE, "num_codebooks": K, "codebook_size": V,
        "channels": 1}


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def sample(key, frames, seed=0, meta=None):
    codes = np.random.default_rng(seed).integers(0, V, (K, frames)).astype(np.int16)
    meta = meta or {"caption": f"caption {key}", "metadata": {"genre": "rock", "bpm": 100},
                    "num_frames": frames}
    return key, {"codes.npy": npy(codes), "json": json.dumps(meta).encode()}


def write_dataset(root, shards, info=INFO, name="ds"):
    """shards: list of lists of (key, members)."""
    root.mkdir(parents=True, exist_ok=True)
    listing = []
    for i, samples in enumerate(shards):
        url = f"{name}-{i:06d}.tar"
        with TarShardWriter(root / url) as w:
            for key, members in samples:
                w.write(key, members)
        listing.append({"url": url, "num_samples": len(samples)})
    write_manifest(root, info, listing)
    return root


@pytest.fixture
def dataset(tmp_path):
    # lengths 5..99 frames: many are shorter than a 1-s segment (50 frames)
    shards = [[sample(f"s{i}_{j}", 5 + 7 * (i * 5 + j) % 95, seed=i * 10 + j) for j in range(5)] for i in range(4)]
    return write_dataset(tmp_path / "ds", shards)


def make_dm(train, val=None, **kw):
    args = dict(train_shards=train if isinstance(train, list) else str(train), val_shards=str(val) if val else None,
                batch_size=4, segment_duration=1.0, num_workers=0, shuffle_buffer=8, batches_per_epoch=6)
    args.update(kw)
    dm = TokenDataModule(**args)
    dm.setup("fit")
    return dm
