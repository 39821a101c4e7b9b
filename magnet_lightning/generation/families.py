"""The generation layer's family table: each family's decoder, its options, and what it takes (a prompt, an infill,
a rescorer, a partner model), declared once. The generator, the command lines' start-up checks, the app and the docs
read it; nothing else asks which family a checkpoint is.

Keyed by the model families' names (models/registry.py). Adding a family: its decoder module (a `decode_request`
and a `num_steps`), an entry here, and the entries of the other layers' tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from magnet_lightning.generation import autoregressive, hybrid_magnet, magnet
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.hybrid_magnet import HybridDecodingConfig
from magnet_lightning.generation.long_form import LongFormDefaults
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.options import option_names
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.models.registry import MODEL_FAMILIES


@dataclass(frozen=True)
class DecoderFamily:
    """What one family's generation takes."""

    config_class: type
    """Its decoding options (a frozen dataclass)."""
    decode: Callable[..., Any]
    """decode(model, DecodeRequest) -> long [B, K, T]."""
    num_steps: Callable[..., int]
    """num_steps(pattern, config, num_frames, prompt_frames, given_frames=0) -> model steps of one generation (one
    long-form window) after `given_frames` given ones (progress bars, the plan); `pattern` is the checkpoint's
    DelayPattern (None for a family without one)."""
    guidance_option: str
    """The option holding the guidance strength (an A/B slider, the docs)."""
    long_form: LongFormDefaults
    """Long-form generation past the segment (long_form.py: every family extends, through its continuation path):
    the default stride, and why."""
    presets: bool = False
    """Takes MAGNeT's presets (`preset`) and per-codebook decoding steps (`decoding_steps`, --steps)."""
    prompt: bool = True
    """Continues a prompt (audio continuation)."""
    infill: bool = False
    """Regenerates a region of a clip."""
    rescored: bool = False
    """Ranks its spans with a rescorer (paper Eq. 5) and leads two-model hybrid inference."""
    partner: bool = False
    """Serves as the rescorer, or the autoregressive half of two-model hybrid inference."""
    fast_path: bool = False
    """Has the static-buffer / CUDA-graph decoder (generation/fast.py)."""
    own_prompt: bool = False
    """Generates its own autoregressive prompt first (its length: the `prompt_seconds` option)."""

    @property
    def options(self) -> frozenset[str]:
        """The option names a caller may set (the config's declared options, generation/options.py)."""
        return option_names(self.config_class)


DECODER_FAMILIES: dict[str, DecoderFamily] = {
    MagnetTransformer.family: DecoderFamily(
        DecodingConfig, magnet.decode_request, magnet.num_steps, "max_cfg_coef", LongFormDefaults(
            0.6, "the reference's 18 s of 30; measured flat join FAD for 0.3-0.9 (evaluation/long_form_joins.py)"),
        presets=True, infill=True, rescored=True, fast_path=True),
    ARTransformer.family: DecoderFamily(
        ARDecodingConfig, autoregressive.decode_request, autoregressive.num_steps, "cfg_coef", LongFormDefaults(
            0.6, "the reference: audiocraft MusicGen's extend_stride, 18 s of a 30-s window"), partner=True),
    HybridMagnetTransformer.family: DecoderFamily(
        HybridDecodingConfig, hybrid_magnet.decode_request, hybrid_magnet.num_steps, "max_cfg_coef",
        LongFormDefaults(0.6, "MAGNeT's; the 4-s overlap of a 10-s window exceeds the 3-s autoregressive prompt, so "
                              "later windows run only max_delay autoregressive steps"), presets=True,
        own_prompt=True),
}


def decoder_family(name: str) -> DecoderFamily:
    """The decoder of family `name`, or a ValueError listing the known ones."""
    if name not in DECODER_FAMILIES:
        raise ValueError(f"unknown model family {name!r}: choose one of {', '.join(DECODER_FAMILIES)}")
    return DECODER_FAMILIES[name]


def family_label(name: str) -> str:
    """The family's name in messages ('MAGNeT', 'autoregressive', 'Hybrid-MAGNeT')."""
    return MODEL_FAMILIES[name].label


def families_where(**capability: bool) -> list[str]:
    """Labels of the families with these capabilities, e.g. families_where(infill=True) (for messages)."""
    return [family_label(name) for name, spec in DECODER_FAMILIES.items()
            if all(getattr(spec, key) == value for key, value in capability.items())]
