"""A 2-rank CPU DDP run over token shards of unequal sizes finishes (no rank waits on another forever).

Lightning re-launches the script for rank 1, so the run lives in a small script file under tmp_path, started in a
subprocess with a timeout. Validation has an odd sample count, so the ranks need padding to get equal batch counts.
"""

import json
import os
import subprocess
import sys
import textwrap

from support.paths import ROOT
from support.token_data import sample, write_dataset

SCRIPT = textwrap.dedent('''
    import json, sys
    import lightning as L
    import torch
    from magnet_lightning.data.datamodule import LogDataSkips, TokenDataModule

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(64, 8)
            self.head = torch.nn.Linear(8, 64)
            self.seen = {"train": 0, "val": 0, "keys": []}

        def loss(self, batch):
            codes, mask = batch["codes"], batch["padding_mask"]  # [B, K, T], [B, T]
            logits = self.head(self.emb(codes[:, 0]))  # [B, T, V]
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), codes[:, 0], reduction="none")
            return (ce * mask).sum() / mask.sum().clamp(min=1)

        def training_step(self, batch, i):
            self.seen["train"] += 1
            self.seen["keys"] += [m["key"] for m in batch["meta"]]
            return self.loss(batch)

        def validation_step(self, batch, i):
            self.seen["val"] += 1
            self.log("val/loss", self.loss(batch), sync_dist=True, batch_size=len(batch["text"]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    if __name__ == "__main__":
        root, out = sys.argv[1], sys.argv[2]
        dm = TokenDataModule(train_shards=[root + "/big", root + "/small"], train_weights=[3.0, 1.0],
                             val_shards=root + "/small", batch_size=2, segment_duration=1.0, num_workers=1,
                             shuffle_buffer=4, batches_per_epoch=3, num_codebooks=4, codebook_size=64, frame_rate=50.0)
        model = Tiny()
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=7, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, callbacks=[LogDataSkips()])
        trainer.fit(model, datamodule=dm)
        rank = trainer.global_rank
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({**model.seen, "val_batches": len(dm.val_dataloader()), "step": trainer.global_step}, f)
''')


def test_two_rank_ddp_over_unequal_shards(tmp_path):
    big = [[sample(f"b{i}_{j}", 40 + 9 * j, seed=j) for j in range(n)] for i, n in enumerate([7, 2, 5])]
    write_dataset(tmp_path / "big", big)
    write_dataset(tmp_path / "small", [[sample(f"s{j}", 70, seed=j) for j in range(3)]], name="small")
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT)
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath,
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        assert r["step"] == 7 and r["train"] == 7  # 3 batches per epoch, stopped by max_steps mid-epoch 3
        assert r["val_batches"] == 1  # 3 val samples padded to 4: 2 per rank, one batch each
        assert r["val"] == 2  # validation after epochs 1 and 2
    assert ranks[0]["keys"] != ranks[1]["keys"]  # ranks draw different streams
