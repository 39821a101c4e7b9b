"""Two nodes x one process on 127.0.0.1 (two torchrun agents, --nnodes 2, gloo): the skipped-sample counters that
`LogDataSkips` logs are the run's (train: summed over both nodes and their loader workers; validation: every rank
reads the whole set, so not multiplied), and the global batch is per-device batch x 2 nodes (issue 18, item 9)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support.helpers import free_port
from support.paths import ROOT
from support.token_data import K, npy, sample, write_dataset

from magnet_lightning.data.datamodule import global_skip_counts

BATCH, STEPS, PER_EPOCH = 2, 6, 3

SCRIPT = textwrap.dedent('''
    import json, sys
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from magnet_lightning.data.datamodule import LogDataSkips, TokenDataModule

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(64, 8)
            self.head = torch.nn.Linear(8, 64)

        def training_step(self, batch, i):
            codes = batch["codes"][:, 0]  # [B, T]
            return torch.nn.functional.cross_entropy(self.head(self.emb(codes)).transpose(1, 2), codes)

        def validation_step(self, batch, i):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class SnapshotSkips(LogDataSkips):
        """LogDataSkips, recording the local counts it was given (the loader worker keeps counting meanwhile)."""
        local, batches = [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.batches.append(len(batch["text"]))

        def on_train_epoch_end(self, trainer, pl_module):
            dm = trainer.datamodule
            counts = dm.skip_counts()
            dm.skip_counts = lambda: counts
            try:
                super().on_train_epoch_end(trainer, pl_module)
            finally:
                del dm.skip_counts
            self.local.append(counts)

    if __name__ == "__main__":
        root, out = sys.argv[1], sys.argv[2]
        dm = TokenDataModule(train_shards=root + "/train", val_shards=root + "/val", batch_size=BATCH,
                             segment_duration=1.0, num_workers=1, shuffle_buffer=4, batches_per_epoch=PER_EPOCH,
                             num_codebooks=4, codebook_size=64, frame_rate=50.0)
        snap = SnapshotSkips()
        trainer = L.Trainer(accelerator="cpu", devices=1, num_nodes=2, strategy="ddp", max_steps=STEPS,
                            logger=CSVLogger(out, name="csv", version=0), enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            callbacks=[snap])
        trainer.fit(Tiny(), datamodule=dm)
        with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump({"local": snap.local, "batches": snap.batches, "world_size": trainer.world_size,
                       "node_rank": trainer.node_rank, "step": trainer.global_step}, f)
''').replace("BATCH", str(BATCH)).replace("PER_EPOCH", str(PER_EPOCH)).replace("STEPS", str(STEPS))


def _bad(key: str, kind: str) -> tuple[str, dict]:
    if kind == "json":
        return key, {"codes.npy": npy(np.zeros((K, 60), "int16")), "json": b"{oops"}
    return key, {"codes.npy": npy(np.full((K, 60), 999, "int16")), "json": b"{}"}  # token >= V


def _corpus(root: Path) -> None:
    """Train: 3 shards, each with 2 bad samples among 4 good ones (so both nodes meet some); val: 1 bad of 4."""
    train = [[sample(f"t{i}_{j}", 60 + j, seed=10 * i + j) for j in range(4)]
             + [_bad(f"t{i}_bj", "json"), _bad(f"t{i}_bt", "token")] for i in range(3)]
    write_dataset(root / "train", train)
    write_dataset(root / "val", [[sample(f"v{j}", 60, seed=j) for j in range(3)] + [_bad("v_b", "json")]],
                  name="val")


@pytest.mark.slow
def test_two_nodes_log_the_run_s_skip_counts_and_global_batch(tmp_path):
    _corpus(tmp_path)
    script = tmp_path / "two_nodes.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               str(script), str(tmp_path), str(tmp_path)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sorted(r["node_rank"] for r in ranks) == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert all(r["step"] == STEPS and r["batches"] == [BATCH] * STEPS for r in ranks)  # global batch 2 x 2 = 4

    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        logged = [row for row in csv.DictReader(f) if row.get("data/skipped_train_bad_json")]
    assert len(logged) == STEPS // PER_EPOCH
    for epoch, row in enumerate(logged):
        local = [r["local"][epoch] for r in ranks]
        for name in local[0]:
            if "skipped_train_" in name:
                assert float(row[name]) == sum(c[name] for c in local), (epoch, name, row, local)
            else:  # validation: each rank counted the whole set's bad sample
                assert float(row[name]) == local[0][name] == local[1][name], (epoch, name, row, local)
    last = [r["local"][-1] for r in ranks]
    assert all(c["data/skipped_train_bad_json"] > 0 and c["data/skipped_train_token_out_of_range"] > 0
               for c in last)  # both nodes met bad samples: rank 0's view alone would be short
    assert float(logged[-1]["data/skipped_val_bad_json"]) == 1


def test_without_a_process_group_the_counts_are_the_process_s():
    counts = {"data/skipped_train_empty": 3, "data/skipped_val_empty": 1}
    assert global_skip_counts(counts) == counts
