"""Two gloo ranks generating a benchmark's missing clips into one folder (metrics/benchmarks/generate.py), the second
rank starting late: run as `python benchmark_ranks.py FOLDER` (tests/evaluation/test_benchmarks.py)."""

import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from magnet_lightning.metrics.benchmarks.generate import generate_missing

ITEMS = [{"id": f"clip{i}", "caption": f"c{i}", "samples": 1600} for i in range(6)]


class InstantGenerator:
    """A stand-in with the generator's interface: 0.1-s clips of noise, at once."""

    sample_rate, device = 16000, "cpu"

    def generate(self, captions, duration, seed, progress=None, **_):
        return SimpleNamespace(audio=0.1 * torch.randn(len(captions), 1, round(duration * self.sample_rate)))


def worker(rank: int, folder: str, port: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    if rank == 1:
        time.sleep(3)  # rank 0 has written its first batch before this rank looks at the folder
    generate_missing(InstantGenerator(), ITEMS, __import__("pathlib").Path(folder), rank=rank, world_size=2,
                     batch_size=1, lufs=None)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1], sys.argv[2]), nprocs=2)
