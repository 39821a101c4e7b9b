"""The base of the LoRA demo (recipes/configs/demo_lora.yaml), found or made without downloads: the newest full
checkpoint of an earlier demo run of the same family and sizes (``python recipes/train_music.py`` writes one under
outputs/demo/runs/), else a random-weight model of those sizes, saved once (announced: adapters on a random base only
show the mechanics)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.config import ModelConfig
from magnet_lightning.lora.files import CHECKPOINT_KEY
from magnet_lightning.models.registry import DEFAULT_FAMILY
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
    return CHECKPOINT_KEY not in raw and hp.get("family", DEFAULT_FAMILY) == family and hp.get("model") == model


def demo_lora_base(module_args: dict[str, Any], runs_root: str | Path, out_dir: str | Path) -> str:
    """The path of a base for the LoRA demo whose LightningModule arguments are `module_args` (the recipe's
    ``model`` section): the newest fitting ``RUN/checkpoints/last.ckpt`` under `runs_root`, else
    ``out_dir/random_base.ckpt`` (written once, seeded by ``module_args['seed']``). The base has no melody
    conditioning: a melody demo adds it (its projection starts at zero)."""
    family = module_args.get("family", DEFAULT_FAMILY)
    model = asdict(replace(ModelConfig(**module_args["model"]), chroma_bins=0, chroma_fuse="prepend"))
    runs = sorted(Path(runs_root).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in runs:
        if _fits(path, family, model):
            log.warning("LoRA demo: adapting the demo checkpoint %s", path)
            return str(path)
    out = Path(out_dir) / RANDOM_BASE
    if out.is_file() and _fits(out, family, model):
        return str(out)
    log.warning("LoRA demo: no demo checkpoint of these sizes under %s (run `python recipes/train_music.py` first "
                "for a trained one): adapting a RANDOM-WEIGHT base, %s", runs_root, out)
    torch.manual_seed(int(module_args.get("seed", 0)))
    args = {k: v for k, v in module_args.items() if k not in ("lora", "init_from", "melody")}
    base = MagnetLightningModule(**{**args, "model": model})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    torch.save({"hyper_parameters": dict(base.hparams), "state_dict": base.state_dict()}, tmp)
    os.replace(tmp, out)
    return str(out)
