"""The model layer's family table: which transformer class a family builds and what its layout needs.

A family's name is the `family` attribute of its model class (the string a checkpoint stores). Each layer above keeps
its own table keyed by the same names (generation/families.py: the decoder and the options it takes;
training/families.py: the objective; checkpoint/audiocraft_families.py: the audiocraft import), and a test checks
that every table has the same keys. Adding a family = a model class, one entry in each table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from magnet_lightning.config import ModelConfig
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer


@dataclass(frozen=True)
class ModelFamily:
    """What the model layer knows of one family."""

    model_class: type[CodebookTransformer]
    label: str
    """The name messages use ('MAGNeT', 'autoregressive', 'Hybrid-MAGNeT')."""
    delay_pattern: bool
    """The model lays the codebooks out in a delay pattern (it takes `delays`)."""
    lora_targets: dict[str, tuple[str, ...]]
    """LoRA target groups -> the projections (names under each transformer `Layer`; `.q` / `.k` / `.v`: a third of
    a fused q/k/v projection) an adapter wraps."""
    prefix: bool = False
    """Runs with conditions prepended to its input (`ModelConfig.text_fuse` / `chroma_fuse` 'prepend': the causal
    stack attends to them like earlier steps); the other families take a melody per frame ('frames')."""

    @property
    def name(self) -> str:
        return self.model_class.family

    def build(self, cfg: ModelConfig, delays: Sequence[int] | None = None) -> CodebookTransformer:
        if delays is not None and not self.delay_pattern:
            raise ValueError(f"delays: the {self.label} family has no delay pattern")
        if cfg.prefix and not self.prefix:
            raise ValueError(f"the {self.label} family takes no prepended conditions (text_fuse={cfg.text_fuse!r}, "
                             f"chroma_fuse={cfg.chroma_fuse!r}): use text_fuse 'cross' and chroma_fuse 'frames'")
        return self.model_class(cfg, delays) if self.delay_pattern else self.model_class(cfg)


_TRUNK_TARGETS = {  # every family shares the trunk (models/layers.py `Layer`), so the same projections
    # A name ending in .q / .k / .v is that third of the Attention's fused in_proj_weight [3D, D]; any other names an
    # nn.Linear under the layer (magnet_lightning.lora attaches the adapters).
    "self_attention": ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.out_proj"),
    "cross_attention": ("cross_attention.q", "cross_attention.k", "cross_attention.v", "cross_attention.out_proj"),
    "feed_forward": ("linear1", "linear2"),
}

MODEL_FAMILIES: dict[str, ModelFamily] = {
    family.name: family for family in (
        ModelFamily(MagnetTransformer, "MAGNeT", delay_pattern=False, lora_targets=_TRUNK_TARGETS),
        ModelFamily(ARTransformer, "autoregressive", delay_pattern=True, lora_targets=_TRUNK_TARGETS, prefix=True),
        ModelFamily(HybridMagnetTransformer, "Hybrid-MAGNeT", delay_pattern=True, lora_targets=_TRUNK_TARGETS),
    )
}
DEFAULT_FAMILY = MagnetTransformer.family
"""The family of a checkpoint that names none (checkpoints written before families existed)."""


def family_of(record: Mapping[str, Any]) -> str:
    """The family a checkpoint's record names (its hyper-parameters, an export's config.json, an adapter's
    config): its `family`, else DEFAULT_FAMILY (files written before families existed). The one reader of it."""
    return str(record.get("family") or DEFAULT_FAMILY)


def model_family(name: str) -> ModelFamily:
    """The family `name`, or a ValueError listing the known ones."""
    if name not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {name!r}: choose one of {', '.join(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[name]


def build_model(family: str, cfg: ModelConfig, delays: Sequence[int] | None = None) -> CodebookTransformer:
    """The family's model class built from `cfg` (and the delay pattern's `delays` where it has one)."""
    return model_family(family).build(cfg, delays)


@torch.no_grad()
def add_melody(model: CodebookTransformer, chroma_bins: int, chroma_fuse: str) -> CodebookTransformer:
    """Give a model without melody conditioning a chroma projection (`chroma_bins` bins, fused by `chroma_fuse`), in
    place: zero weight and bias, so the model first computes exactly what it did (the start of a melody fine-tune,
    and the base an adapter trained with it is attached to). Returns the model."""
    if model.cfg.chroma_bins:
        raise ValueError("this model already has melody conditioning")
    cfg = replace(model.cfg, chroma_bins=chroma_bins, chroma_fuse=chroma_fuse)
    family = model_family(model.family)
    if cfg.prefix and not family.prefix:
        raise ValueError(f"the {family.label} family takes a melody per frame (chroma_fuse 'frames'), not "
                         f"{chroma_fuse!r}")
    weight = model.text_proj.weight
    model.chroma_proj = nn.Linear(chroma_bins, cfg.dim).to(device=weight.device, dtype=weight.dtype)
    nn.init.zeros_(model.chroma_proj.weight)
    nn.init.zeros_(model.chroma_proj.bias)
    model.cfg = cfg
    return model
