"""What training a melody-conditioned model (`ModelConfig.chroma_bins` > 0) adds to a batch: the segments' chroma
(from shards tokenized with --chroma; data/chroma.py) as the model's fusion takes it, and the condition's dropouts
(audiocraft's chroma2music.yaml): the classifier-free-guidance dropout drops text and melody together (the text
dropout's None captions), and the melody's own attribute dropout drops the melody of a whole micro-batch with
probability `MelodyConfig.attribute_dropout` (0.5), as the reference's `AttributeDropout` draws once per batch.
A dropped melody is the null condition: a zero embedding (prefix rows of zeros, or nothing added to the frames).

It also covers fine-tuning a model without melody conditioning into one (`init_from` a text-only base): the new
projection `chroma_proj` starts at zero, so the model first computes exactly what its base does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, replace

import torch

from magnet_lightning.config import MelodyConfig, ModelConfig
from magnet_lightning.errors import UserError
from magnet_lightning.models.melody import ChromaInput, chroma_at_frames


def check_melody_settings(model_cfg: ModelConfig, melody: MelodyConfig | None) -> None:
    """A melody model needs its chroma settings (`melody`), with as many bins as its projection takes."""
    if model_cfg.chroma_bins and melody is None:
        raise UserError(f"model.model.chroma_bins={model_cfg.chroma_bins}: a melody-conditioned model needs "
                        "model.melody (its chroma settings)")
    if melody is not None and melody.n_chroma != model_cfg.chroma_bins:
        raise UserError(f"model.melody.n_chroma={melody.n_chroma} differs from model.model.chroma_bins="
                        f"{model_cfg.chroma_bins} (set chroma_bins to the bins of the melody's chroma, 12)")


def melody_dropped(texts_out: Sequence[str | None], attribute_dropout: float, rng: random.Random) -> torch.Tensor:
    """bool [B]: items whose melody is dropped: the text dropout's CFG drop (its None captions) or, once per
    micro-batch, the melody's attribute dropout."""
    attribute = rng.random() < attribute_dropout
    return torch.tensor([attribute or text is None for text in texts_out])


def batch_chroma(batch: dict, model_cfg: ModelConfig, melody: MelodyConfig, frame_rate: float,
                 dropped: torch.Tensor | None = None) -> ChromaInput | None:
    """The chroma input of a batch (None for a model without melody conditioning): its rows as a prefix, or one per
    frame of the codes (`chroma_at_frames` with the segments' offsets); dropped items absent."""
    if not model_cfg.chroma_bins:
        return None
    if "chroma" not in batch:
        raise UserError("this model is melody-conditioned but the batch holds no chroma: train on shards tokenized "
                        "with --chroma (the datamodule reads them once the model's melody settings reach it)")
    rows = batch["chroma"].float()
    if model_cfg.chroma_fuse == "frames":
        rows = chroma_at_frames(rows, batch["codes"].shape[-1], frame_rate, melody.chroma_rate,
                                batch.get("chroma_offset", 0.0))
    present = None if dropped is None else ~dropped.to(rows.device)
    return ChromaInput.of(rows, present)


def adds_melody(base: ModelConfig, cfg: ModelConfig) -> bool:
    """`cfg` is `base` (a model without melody conditioning) with melody conditioning added."""
    return not base.chroma_bins and cfg.chroma_bins > 0 and replace(
        cfg, chroma_bins=0, chroma_fuse=base.chroma_fuse) == base


def base_state_with_melody(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base's weights plus a zero `chroma_proj` (weight and bias) of `model`'s shapes."""
    zeros = {f"chroma_proj.{name}": torch.zeros_like(value) for name, value in model.chroma_proj.state_dict().items()}
    return {**state, **zeros}


def added_melody(cfg: ModelConfig, melody: MelodyConfig) -> dict:
    """What a LoRA run records of the melody conditioning it added to its base (lora.files.BaseIdentity.melody)."""
    return {"model": {"chroma_bins": cfg.chroma_bins, "chroma_fuse": cfg.chroma_fuse}, "settings": asdict(melody)}
