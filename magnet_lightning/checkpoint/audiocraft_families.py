"""The checkpoint layer's family table: how each family imports from an audiocraft release file (`state_dict.bin`
with its `xp.cfg`), or None for a family with no release format.

Keyed by the model families' names (models/registry.py); audiocraft_config.read_lm_config reads it and nothing else
decides what a family's xp.cfg means. A file's family is its `lm_model`, and where two families share one (MAGNeT and
Hybrid-MAGNeT are both `transformer_lm_magnet`), its `solver`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from magnet_lightning.models.ar import ARTransformer
from magnet_lightning.models.hybrid import HybridMagnetTransformer
from magnet_lightning.models.magnet import MagnetTransformer

_UNUSED_PATTERN = "settings of a codebook pattern the model does not use"


@dataclass(frozen=True)
class AudiocraftImport:
    """What an audiocraft LM config of one family means here."""

    lm_model: str
    """The xp.cfg's `lm_model` that names this family."""
    causal: bool
    """`transformer_lm.causal` the family needs."""
    pattern: str
    """`codebooks_pattern.modeling` the family needs ('parallel' or 'delay')."""
    delays: bool
    """Read the delay pattern's `codebooks_pattern.delay.delays`."""
    windowed_attention: bool
    """Read `transformer_lm.subcodes_context` (MAGNeT's restricted self-attention)."""
    generation_keys: dict[str, str]
    """`generate.lm.<key>` -> our decoding option of the same meaning."""
    guidance_keys: dict[str, tuple] = field(default_factory=dict)
    """Other config keys read as decoding options: key -> (our option, type, default)."""
    extra_keys: tuple[str, ...] = ()
    """Config keys this family uses beyond the shared ones."""
    ignored: tuple[tuple[str, str], ...] = ()
    """(key pattern, why) ignored by this family only."""
    solver: str | None = None
    """The xp.cfg's `solver` that tells this family from another of the same `lm_model` (None: any other solver)."""
    stage_per_item: bool = False
    """The family's solver draws the masked stage per item (not per batch): what a converted checkpoint's masking
    records for fine-tuning."""


_SAMPLING_KEYS = {"use_sampling": "use_sampling", "temp": "temperature", "top_k": "top_k", "top_p": "top_p"}
_MAGNET_KEYS = {**_SAMPLING_KEYS, "max_cfg_coef": "max_cfg_coef", "min_cfg_coef": "min_cfg_coef",
                "decoding_steps": "decoding_steps", "anneal_temp": "anneal_temperature", "span_scoring": "span_scoring",
                "span_arrangement": "span_arrangement"}
_DELAY_KEYS = ("codebooks_pattern.delay.delays", "codebooks_pattern.delay.flatten_first",
               "codebooks_pattern.delay.empty_initial")

AUDIOCRAFT_IMPORTS: dict[str, AudiocraftImport | None] = {
    MagnetTransformer.family: AudiocraftImport(
        lm_model="transformer_lm_magnet", causal=False, pattern="parallel", delays=False, windowed_attention=True,
        generation_keys=dict(_MAGNET_KEYS),
        ignored=(
            ("codebooks_pattern.delay.*", _UNUSED_PATTERN),
            ("codebooks_pattern.parallel.*",
             "MAGNeT's decoding and objective do not use the pattern (identity layout)"),
            ("classifier_free_guidance.inference_coef",
             "MAGNeT anneals its own guidance (max_cfg_coef -> min_cfg_coef)"),
            ("transformer_lm.two_step_cfg", "not supported by audiocraft's MAGNeT generation"),
        ),
    ),
    ARTransformer.family: AudiocraftImport(
        lm_model="transformer_lm", causal=True, pattern="delay", delays=True, windowed_attention=False,
        generation_keys=dict(_SAMPLING_KEYS),
        guidance_keys={"classifier_free_guidance.inference_coef": ("cfg_coef", float, 3.0),
                       "transformer_lm.two_step_cfg": ("two_step_cfg", bool, False)},
        extra_keys=(*_DELAY_KEYS, "transformer_lm.two_step_cfg", "classifier_free_guidance.inference_coef"),
        ignored=(("codebooks_pattern.parallel.*", _UNUSED_PATTERN),),
    ),
    # facebook/hybrid-magnet-small, -medium: the MAGNeT LM (non-causal, restricted window) trained by audiocraft's
    # hybrid_magnet branch's solver over the delay pattern. The branch's solver reads generate.lm's MAGNeT keys,
    # generates the prompt with the autoregressive defaults and the config's guidance, and takes the prompt's length
    # from generate.lm.max_prompt_len (null in the branch's config: a parameter).
    HybridMagnetTransformer.family: AudiocraftImport(
        lm_model="transformer_lm_magnet", solver="hybrid_magnet", causal=False, pattern="delay", delays=True,
        windowed_attention=True, stage_per_item=True,
        generation_keys={**_MAGNET_KEYS, "max_prompt_len": "prompt_seconds"},
        guidance_keys={"classifier_free_guidance.inference_coef": ("ar_cfg_coef", float, 3.0)},
        extra_keys=(*_DELAY_KEYS, "solver", "classifier_free_guidance.inference_coef"),
        ignored=(("codebooks_pattern.parallel.*", _UNUSED_PATTERN),
                 ("transformer_lm.two_step_cfg", "not read by the branch's hybrid generation (one batched CFG pass)")),
    ),
}
LM_MODELS = sorted({spec.lm_model for spec in AUDIOCRAFT_IMPORTS.values() if spec is not None})
DEFAULT_LM_MODEL = AUDIOCRAFT_IMPORTS[MagnetTransformer.family].lm_model
"""audiocraft's default `lm_model` (a config that names none)."""


def family_of_lm_model(lm_model: str, solver: str | None = None) -> str | None:
    """The family an xp.cfg's `lm_model` (and `solver`, where two families share the lm_model) imports as, or None
    when no family reads it."""
    readers = [(family, spec) for family, spec in AUDIOCRAFT_IMPORTS.items()
               if spec is not None and spec.lm_model == lm_model]
    exact = [family for family, spec in readers if spec.solver is not None and spec.solver == solver]
    generic = [family for family, spec in readers if spec.solver is None]
    return (exact or generic or [None])[0]
