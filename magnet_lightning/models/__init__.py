"""The two model families on one trunk: `magnet` (MagnetTransformer: masked, non-autoregressive) and `ar`
(ARTransformer: causal over the delay pattern, MusicGen-style); `layers` and `base` hold what they share."""

from __future__ import annotations

from collections.abc import Sequence

from magnet_lightning.config import ModelConfig
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.magnet import MagnetTransformer

FAMILIES = ("magnet", "musicgen")
"""Checkpoint families, as audiocraft_config.read_lm_config names them."""


def build_model(family: str, cfg: ModelConfig, delays: Sequence[int] | None = None) -> CodebookTransformer:
    """'magnet' -> MagnetTransformer(cfg); 'musicgen' -> ARTransformer(cfg, delays)."""
    if family == "magnet":
        return MagnetTransformer(cfg)
    if family == "musicgen":
        return ARTransformer(cfg, delays)
    raise ValueError(f"unknown model family {family!r}: choose one of {FAMILIES}")
