"""Throughput of the training data loader over token shards.

Writes shards of random 10-s items (K=4, T=500 int16 at 50 Hz, V=2048) to a temporary folder, then times
`TokenDataModule.train_dataloader()` with 0, 1 and 2 workers (after a warm-up that fills the shuffle buffer).

    python evaluation/benchmark_data.py --json OUT.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.data.shards import TarShardWriter, write_manifest


def write_shards(out_dir: Path, num_shards: int, per_shard: int, num_codebooks: int = 4, frames: int = 500,
                 codebook_size: int = 2048) -> None:

    rng = np.random.default_rng(0)
    shards = []
    for s in range(num_shards):
        url = f"bench-{s:06d}.tar"
        with TarShardWriter(out_dir / url) as sink:
            for i in range(per_shard):
                buf = io.BytesIO()
                np.save(buf, rng.integers(0, codebook_size, (num_codebooks, frames), dtype=np.int16))
                meta = {"caption": f"item {s}-{i}", "metadata": {"genre": "rock", "bpm": 120, "moods": ["calm"]},
                        "duration": frames / 50}
                sink.write(f"s{s}_{i}", {"codes.npy": buf.getvalue(), "json": json.dumps(meta).encode()})
        shards.append({"url": url, "num_samples": per_shard})
    info = {"name": "bench", "sample_rate": 32000, "frame_rate": 50.0, "num_codebooks": num_codebooks,
            "codebook_size": codebook_size, "channels": 1}
    write_manifest(out_dir, info, shards)


def measure(shard_dir: Path, workers: int, batch_size: int, batches: int, warmup: int) -> float:

    dm = TokenDataModule(train_shards=str(shard_dir), batch_size=batch_size, segment_duration=10.0,
                         num_workers=workers, shuffle_buffer=500, batches_per_epoch=warmup + batches)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    n = sum(next(it)["codes"].shape[0] for _ in range(batches))
    rate = n / (time.perf_counter() - start)
    loader.close()
    return rate


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--per-shard", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=400)
    p.add_argument("--warmup", type=int, default=40)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = {"items": "K=4, T=500 int16, 10 s at 50 Hz", "batch_size": args.batch_size, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(Path(tmp), args.shards, args.per_shard)
        for workers in (0, 1, 2):
            results[f"samples_per_s_workers{workers}"] = round(
                measure(Path(tmp), workers, args.batch_size, args.batches, args.warmup), 1)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
