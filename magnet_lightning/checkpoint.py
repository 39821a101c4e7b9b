"""Load a MAGNeT model for inference from any supported file: our Lightning checkpoint (training output or a
converted one) or an audiocraft `state_dict.bin`, with the metadata generation needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.config import ModelConfig
from magnet_lightning.convert import CheckpointError, read_audiocraft
from magnet_lightning.model import MagnetTransformer


@dataclass
class Pretrained:
    model: MagnetTransformer
    text_encoder: str
    """T5 hub name or local path."""
    codec: str
    """Codec name or path (see codec.load_codec)."""
    sample_rate: int
    frame_rate: float
    span_len: int
    segment_duration: float
    decoding: dict[str, Any] = field(default_factory=dict)
    """Decoding defaults recorded at training/conversion time."""


def _from_lightning(raw: dict, path: Path) -> Pretrained:
    hp = raw.get("hyper_parameters") or {}
    if "model" not in hp:
        raise CheckpointError(f"{path}: a Lightning checkpoint without model hyper-parameters (not ours)")
    cfg = ModelConfig.from_dict(hp["model"])
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in raw["state_dict"].items() if k.startswith(prefix)}
    model = MagnetTransformer(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing {missing[:5]} / unexpected {unexpected[:5]} weights")
    return Pretrained(
        model=model.eval(),
        text_encoder=hp.get("text_encoder", "t5-base"),
        codec=hp.get("codec", "facebook/encodec_32khz"),
        sample_rate=int(hp.get("sample_rate", 32000)),
        frame_rate=float(hp.get("frame_rate", 50.0)),
        span_len=int((hp.get("masking") or {}).get("span_len", 3)),
        segment_duration=float(hp.get("segment_duration", 10.0)),
        decoding=dict(hp.get("decoding") or {}),
    )


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> Pretrained:
    """Our `.ckpt` (EMA weights when trained with EMA), an audiocraft `state_dict.bin` or an export folder
    (`magnet_lightning.export`) -> Pretrained (eval mode)."""
    path = Path(path)
    from magnet_lightning.export import is_export, load_exported

    if is_export(path):
        return load_exported(path, map_location)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
    if isinstance(raw, dict) and "best_state" in raw:
        ckpt = read_audiocraft(path)
        model = MagnetTransformer(ckpt.config)
        model.load_state_dict(ckpt.state_dict)
        meta = ckpt.metadata
        return Pretrained(
            model.eval().to(map_location), meta["text_encoder"], meta["codec"], meta["sample_rate"],
            meta["frame_rate"], meta["span_len"], meta["segment_duration"], meta["decoding"],
        )
    if isinstance(raw, dict) and "state_dict" in raw:
        pretrained = _from_lightning(raw, path)
        pretrained.model.to(map_location)
        return pretrained
    raise CheckpointError(f"{path}: neither a magnet_lightning checkpoint nor an audiocraft state_dict.bin")
