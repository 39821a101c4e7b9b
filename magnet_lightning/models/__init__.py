"""The model families on one trunk: `magnet` (MagnetTransformer: masked, non-autoregressive), `ar` (ARTransformer:
causal over the delay pattern, MusicGen-style) and `hybrid` (HybridMagnetTransformer: an autoregressive prompt then
MAGNeT, one model); `layers` and `base` hold what they share."""

from __future__ import annotations

from collections.abc import Sequence

from magnet_lightning.config import ModelConfig
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer

FAMILIES = ("magnet", "musicgen", "hybrid")
"""Checkpoint families: audiocraft_config.read_lm_config's two, and Hybrid-MAGNeT (trained here only)."""


def build_model(family: str, cfg: ModelConfig, delays: Sequence[int] | None = None) -> CodebookTransformer:
    """'magnet' -> MagnetTransformer(cfg); 'musicgen' -> ARTransformer(cfg, delays); 'hybrid' ->
    HybridMagnetTransformer(cfg, delays)."""
    if family == "magnet":
        return MagnetTransformer(cfg)
    if family == "musicgen":
        return ARTransformer(cfg, delays)
    if family == "hybrid":
        return HybridMagnetTransformer(cfg, delays)
    raise ValueError(f"unknown model family {family!r}: choose one of {FAMILIES}")
