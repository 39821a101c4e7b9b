"""The metrics (KAD too) give the same result on 2 gloo ranks (uneven shards) as in one process."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from support.metrics_ddp import compute_all, make_data
from support.paths import ROOT, TESTS

REPO = ROOT


SCRIPT = textwrap.dedent("""
    import json, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
    from support.metrics_ddp import SPLIT, compute_all, make_data

    def worker(rank, tmp):
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method="file://" + tmp + "/pg", rank=rank, world_size=2)
        data = make_data()
        shard = slice(None, SPLIT) if rank == 0 else slice(SPLIT, None)
        fad, out = compute_all(data, shard)
        fad.save_reference_stats(tmp + "/ref.pt")  # collective; rank 0 writes
        dist.barrier()
        _, again = compute_all(data, shard, ref_path=tmp + "/ref.pt")
        out["fad_reused"] = again["fad_reused"]
        with open(tmp + f"/rank{{rank}}.json", "w") as f:
            json.dump(out, f)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(worker, args=(sys.argv[1],), nprocs=2, join=True)
""")


def test_two_rank_gloo_results_equal_single_process(tmp_path):
    script = tmp_path / "ddp_metrics.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(TESTS)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, single = compute_all(make_data())
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:
        for key in ("fad", "kl", "clap", "kad"):
            assert result[key] == pytest.approx(single[key], rel=1e-5, abs=1e-7), key
        # reference stats saved in DDP hold the whole real set once, and loading them on every rank
        # does not count them twice
        assert result["fad_reused"] == pytest.approx(single["fad"], rel=1e-5)
