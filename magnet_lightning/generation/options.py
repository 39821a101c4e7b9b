"""Which decoding options a checkpoint's generation uses: the one rule, shared by the generator and the CLIs'
argument checks (so both accept and refuse the same things). The options themselves are the families'
configs: decoding.DecodingConfig (MAGNeT, Hybrid-MAGNeT) and ar_decoding.ARDecodingConfig (autoregressive)."""

from __future__ import annotations

import logging
from dataclasses import fields

from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.magnet_config import DecodingConfig, decoding_preset

log = logging.getLogger(__name__)

_DECODING_FIELDS = {f.name for f in fields(DecodingConfig)}
_AR_FIELDS = {f.name for f in fields(ARDecodingConfig)}
_OTHER_FAMILY_RECORDS = {"musicgen": {"preset", "prompt_seconds"},
                         "magnet": {"cfg_coef", "two_step_cfg", "prompt_seconds"},
                         "hybrid": {"cfg_coef", "two_step_cfg", "prompt_seconds"}}
"""Options a training run records for every family (lit_module.DecodingDefaults) that a family's decoding ignores."""
_AR_RECORDED_SAME_MATHS = {"two_step_cfg"}
"""Recorded audiocraft options without a field here: two-step CFG gives the same logits as the batched [cond; null]
rows (the null rows are zero text states, so their padding does not change the conditional rows)."""



def decoding_config_for(family: str, recorded: dict, *, span_len: int, segment_duration: float, num_codebooks: int,
                        duration: float | None = None, preset: str | None = None,
                        overrides: dict | None = None) -> DecodingConfig | ARDecodingConfig:
    """The decoding options of a checkpoint: (MAGNeT) the preset (the checkpoint's, else 'music') <- the options
    recorded in the checkpoint <- overrides, with the model's training span; (autoregressive) ARDecodingConfig
    defaults <- the recorded options <- overrides. None overrides are ignored; an option the family does not take (a
    preset or decoding_steps for the autoregressive family, cfg_coef for MAGNeT) is a ValueError naming it. Shared by
    the generator and the CLI's argument checks, so both refuse the same things."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    recorded = {k: v for k, v in recorded.items() if k not in _OTHER_FAMILY_RECORDS[family]}
    if family == "musicgen":
        wrong = sorted(set(given) - _AR_FIELDS) + (["preset"] if preset else [])
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not an option of the autoregressive family (it takes "
                             f"{', '.join(sorted(_AR_FIELDS))})")
        unknown = set(recorded) - _AR_FIELDS - _AR_RECORDED_SAME_MATHS
        if unknown:
            log.warning("ignoring unknown decoding options recorded in the checkpoint: %s", sorted(unknown))
        return ARDecodingConfig(**{**{k: v for k, v in recorded.items() if k in _AR_FIELDS}, **given})
    recorded = dict(recorded)
    preset = preset or recorded.pop("preset", "music")
    recorded.pop("preset", None)
    unknown = set(recorded) - _DECODING_FIELDS
    if unknown:
        log.warning("ignoring unknown decoding options recorded in the checkpoint: %s", sorted(unknown))
    if set(given) - _DECODING_FIELDS:
        raise ValueError(f"{', '.join(sorted(set(given) - _DECODING_FIELDS))}: not a MAGNeT decoding option")
    values = {"span_len": span_len, **{k: v for k, v in recorded.items() if k in _DECODING_FIELDS}, **given}
    return decoding_preset(preset, duration or segment_duration, num_codebooks, **values)
