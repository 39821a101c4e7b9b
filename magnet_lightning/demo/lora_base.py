"""The base of the LoRA demos (recipes/configs/demo_lora.yaml, demo_melody.yaml), found or made without downloads:
the newest full checkpoint of an earlier demo run of the same family and sizes (``python recipes/train_music.py``
writes one under outputs/demo/runs/), else a model of those sizes made once and saved (announced): trained for
`demo.base_steps` steps on the demo corpus when that is set (the melody demo: a base that has learnt the corpus, as a
release has), else with random weights (adapters on a random base only show the mechanics)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch

from magnet_lightning.config import ModelConfig
from magnet_lightning.data.datamodule import TokenDataModule
from magnet_lightning.lora.files import CHECKPOINT_KEY
from magnet_lightning.models.registry import family_of
from magnet_lightning.training.lit_module import MagnetLightningModule

log = logging.getLogger(__name__)
RANDOM_BASE = "random_base.ckpt"


def _fits(path: Path, family: str, model: dict[str, Any]) -> bool:
    """A full (not LoRA) checkpoint of `family` with exactly these model sizes."""
    try:
        raw = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # unreadable or being written: not a candidate
        return False
    hp = raw.get("hyper_parameters") or {}
    return CHECKPOINT_KEY not in raw and family_of(hp) == family and hp.get("model") == model


def _train_base(args: dict[str, Any], data_args: dict[str, Any], train_shards: str, steps: int, path: Path) -> None:
    """Train the base of `args` (a text-only MagnetLightningModule) for `steps` steps on `train_shards` (AdamW, 3e-3,
    constant); save it."""
    optimizer = {"name": "adamw", "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.0, "schedule": "constant",
                 "warmup_steps": 0}  # the base's own schedule (the recipe's is the adapters')
    module = MagnetLightningModule(**{**args, "ema_every_n_steps": 0, "optimizer": optimizer})
    data = TokenDataModule(train_shards=train_shards, batch_size=int(data_args.get("batch_size", 8)),
                           segment_duration=float(args.get("segment_duration", 10.0)), num_workers=0,
                           shuffle_buffer=int(data_args.get("shuffle_buffer", 64)), batches_per_epoch=steps,
                           text_augment=False, seed=int(args.get("seed", 0)))
    L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              enable_progress_bar=False).fit(module, data)
    _save(module, path, steps)


def _save(module: MagnetLightningModule, path: Path, steps: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "demo_base_steps": steps},
               tmp)
    os.replace(tmp, path)


def demo_lora_base(module_args: dict[str, Any], runs_root: str | Path, out_dir: str | Path, base_steps: int = 0,
                   train_shards: str | None = None, data_args: dict[str, Any] | None = None) -> str:
    """The path of a base for the LoRA demo whose LightningModule arguments are `module_args` (the recipe's
    ``model`` section): the newest fitting ``RUN/checkpoints/last.ckpt`` under `runs_root`, else
    ``out_dir/random_base.ckpt`` (written once, seeded by ``module_args['seed']``). The base has no melody
    conditioning: a melody demo adds it (its projection starts at zero)."""
    family = family_of(module_args)
    model = asdict(replace(ModelConfig(**module_args["model"]), chroma_bins=0, chroma_fuse="prepend"))
    runs = sorted(Path(runs_root).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in runs:
        if _fits(path, family, model):
            log.warning("LoRA demo: adapting the demo checkpoint %s", path)
            return str(path)
    out = Path(out_dir) / (f"trained_base_{base_steps}.ckpt" if base_steps else RANDOM_BASE)
    if out.is_file() and _fits(out, family, model):
        return str(out)
    torch.manual_seed(int(module_args.get("seed", 0)))
    args = {k: v for k, v in module_args.items() if k not in ("lora", "init_from", "melody")}
    args["model"] = model
    if base_steps and train_shards:
        log.warning("LoRA demo: no demo checkpoint of these sizes under %s: training a base of these sizes for %d "
                    "steps on the demo corpus (no melody), %s", runs_root, base_steps, out)
        _train_base(args, data_args or {}, train_shards, base_steps, out)
        return str(out)
    log.warning("LoRA demo: no demo checkpoint of these sizes under %s (run `python recipes/train_music.py` first "
                "for a trained one): adapting a RANDOM-WEIGHT base, %s", runs_root, out)
    _save(MagnetLightningModule(**args), out)
    return str(out)
