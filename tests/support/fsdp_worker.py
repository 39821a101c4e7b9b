"""Worker of tests/training/test_fsdp_training.py: one CPU training run (gloo) of a tiny model under DDP or FSDP2,
launched as `python tests/support/fsdp_worker.py CONFIG.json`; each rank writes its figures to OUT/rank{R}.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.distributed.tensor import DTensor

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]  # checkout, tests/
from magnet_lightning.training.fsdp import local_numel  # noqa: E402
from magnet_lightning.training.strategies import MagnetFSDPStrategy  # noqa: E402
from support.helpers import FixedBatches, loader, tiny_module  # noqa: E402


class Record(L.Callback):
    """Each optimizer step's loss on this rank, and a digest of the full weights when training starts."""

    def __init__(self):
        self.losses: list[float] = []
        self.start_digest = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_digest = digest(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def digest(module: torch.nn.Module) -> float:
    """Sum of all weights (full tensors gathered from the shards)."""
    total = 0.0
    for p in module.parameters():
        full = p.full_tensor() if isinstance(p, DTensor) else p
        total += float(full.detach().double().sum())
    return total


def main(cfg: dict) -> None:
    L.seed_everything(0)
    module = tiny_module(family=cfg.get("family", "magnet"), ema_every_n_steps=cfg.get("ema", 0), ema_decay=0.5,
                         activation_checkpointing=cfg.get("ac", False))
    strategy = "ddp" if cfg["strategy"] == "ddp" else MagnetFSDPStrategy()
    out = Path(cfg["out"])
    record = Record()
    callbacks = [record, ModelCheckpoint(dirpath=out / "checkpoints", filename="{step}", save_top_k=-1,
                                         every_n_train_steps=cfg.get("save_every", 3), save_last=True)]
    trainer = L.Trainer(accelerator="cpu", devices=cfg.get("devices", 2), strategy=strategy,
                        max_steps=cfg["steps"], logger=False, callbacks=callbacks, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=2, val_check_interval=cfg["steps"],
                        num_sanity_val_steps=0)
    vary = cfg.get("vary", True)  # False: the same batch every step (a resumed epoch restarts its data)
    trainer.fit(module, loader(FixedBatches(16, vary=vary)), loader(FixedBatches(4, vary=True)),
                ckpt_path=cfg.get("resume"))
    local, total = local_numel(module.model)
    result = {"rank": trainer.global_rank, "steps": trainer.global_step, "losses": record.losses,
              "start_digest": record.start_digest, "local_params": local, "total_params": total,
              "threads": torch.get_num_threads(),
              "val": float(trainer.callback_metrics["val/loss"])}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
