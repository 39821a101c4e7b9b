"""The generation layer's family table: each family's decoder, its options, and what it takes (a prompt, an infill,
a rescorer, a partner model), declared once. The generator, the command lines' start-up checks, the app and the docs
read it; nothing else asks which family a checkpoint is.

Keyed by the model families' names (models/registry.py). Adding a family: its decoder module (a `decode_request`
and a `num_steps`), an entry here, and the entries of the other layers' tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from magnet_lightning.generation import autoregressive, hybrid_magnet, magnet
from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.hybrid_magnet import HybridDecodingConfig
from magnet_lightning.generation.long_form import LongFormDefaults
from magnet_lightning.generation.magnet_config import DecodingConfig, decoding_preset
from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer
from magnet_lightning.models.registry import MODEL_FAMILIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderFamily:
    """What one family's generation takes."""

    config_class: type
    """Its decoding options (a frozen dataclass)."""
    decode: Callable[..., Any]
    """decode(model, DecodeRequest) -> long [B, K, T]."""
    num_steps: Callable[..., int]
    """num_steps(model, config, num_frames, prompt_frames, given_frames=0) -> model steps of one generation (one
    long-form window) after `given_frames` given ones (progress bars)."""
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
    ignored_records: frozenset[str] = frozenset()
    """Options a training run records for every family (lit_module.DecodingDefaults) that this family ignores."""

    @property
    def options(self) -> frozenset[str]:
        """The option names a caller may set (the config's fields)."""
        return frozenset(f.name for f in fields(self.config_class))


_RECORDED_ONLY = frozenset({"two_step_cfg"})
"""Recorded audiocraft options without a field here: two-step CFG gives the same logits as the batched [cond; null]
rows (the null rows are zero text states, so their padding does not change the conditional rows)."""

DECODER_FAMILIES: dict[str, DecoderFamily] = {
    MagnetTransformer.family: DecoderFamily(
        DecodingConfig, magnet.decode_request, magnet.num_steps, "max_cfg_coef", LongFormDefaults(
            0.6, "the reference's 18 s of 30; measured flat join FAD for 0.3-0.9 (evaluation/long_form_joins.py)"),
        presets=True, infill=True,
        rescored=True, fast_path=True, ignored_records=frozenset({"cfg_coef", "prompt_seconds"}) | _RECORDED_ONLY),
    ARTransformer.family: DecoderFamily(
        ARDecodingConfig, autoregressive.decode_request, autoregressive.num_steps, "cfg_coef", LongFormDefaults(
            0.6, "the reference: audiocraft MusicGen's extend_stride, 18 s of a 30-s window"), partner=True,
        ignored_records=frozenset({"preset", "prompt_seconds"}) | _RECORDED_ONLY),
    HybridMagnetTransformer.family: DecoderFamily(
        HybridDecodingConfig, hybrid_magnet.decode_request, hybrid_magnet.num_steps, "max_cfg_coef",
        LongFormDefaults(0.6, "MAGNeT's; the 4-s overlap of a 10-s window exceeds the 3-s autoregressive prompt, so "
                              "later windows run only max_delay autoregressive steps"), presets=True,
        own_prompt=True, ignored_records=frozenset({"cfg_coef"}) | _RECORDED_ONLY),
}
assert set(DECODER_FAMILIES) == set(MODEL_FAMILIES), "every model family needs a decoder entry"


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


def decoding_config_for(family: str, recorded: dict, *, span_len: int, segment_duration: float, num_codebooks: int,
                        duration: float | None = None, preset: str | None = None,
                        overrides: dict | None = None) -> Any:
    """The decoding options of one generation: (preset families) the preset (the checkpoint's, else 'music') <- the
    options recorded in the checkpoint <- overrides, with the model's training span; (others) the config's defaults
    <- recorded <- overrides. None overrides are ignored; an option the family does not take is a ValueError naming
    it and the family. Shared by the generator and the command lines' checks, so both refuse the same things."""
    spec = decoder_family(family)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    wrong = sorted(set(given) - spec.options) + (["preset"] if preset and not spec.presets else [])
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: not an option of the {family_label(family)} family (it takes "
                         f"{', '.join(sorted(spec.options | ({'preset'} if spec.presets else set())))})")
    recorded = {k: v for k, v in recorded.items() if k not in spec.ignored_records}
    preset = preset or recorded.get("preset", "music")
    recorded.pop("preset", None)
    unknown = set(recorded) - spec.options
    if unknown:
        log.warning("ignoring unknown decoding options recorded in the checkpoint: %s", sorted(unknown))
    values = {**{k: v for k, v in recorded.items() if k in spec.options}, **given}
    if not spec.presets:
        return spec.config_class(**values)
    return decoding_preset(preset, duration or segment_duration, num_codebooks, config_class=spec.config_class,
                           **{"span_len": span_len, **values})
