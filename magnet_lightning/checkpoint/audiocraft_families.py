"""The checkpoint layer's family table: how each family imports from an audiocraft release file (`state_dict.bin`
with its `xp.cfg`) and exports to it (interop/audiocraft_release.py), and whether transformers' MusicGen classes hold
it; None for a family with no release format.

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
    solver: str = ""
    """The `solver` of the family's xp.cfg (what trained the model; an export writes it)."""
    audio_solver: str = ""
    """`solver` of the family's text-to-sound models (16 kHz, audiocraft's own codec), where Meta named it apart."""
    solver_decides: bool = False
    """The family shares its `lm_model` with another and is read only from a file whose `solver` is its own (any
    other solver reads as the other family)."""
    stage_per_item: bool = False
    """The family's solver draws the masked stage per item (not per batch): what a converted checkpoint's masking
    records for fine-tuning."""
    client: str = ""
    """The audiocraft class whose `get_pretrained` loads the family's release folders (music); "" where audiocraft has
    none that reads the family as it is."""
    audio_client: str = ""
    """... and its text-to-sound ones."""
    transformers_musicgen: bool = False
    """transformers' `MusicgenForConditionalGeneration` holds this family's models (causal decoder, delay pattern
    0..K-1): `magnet-convert transformers` reads them and `magnet-export --format transformers` writes them."""


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
        solver="magnet", audio_solver="audio_magnet", client="MAGNeT", audio_client="MAGNeT",
    ),
    ARTransformer.family: AudiocraftImport(
        lm_model="transformer_lm", causal=True, pattern="delay", delays=True, windowed_attention=False,
        generation_keys=dict(_SAMPLING_KEYS),
        guidance_keys={"classifier_free_guidance.inference_coef": ("cfg_coef", float, 3.0),
                       "transformer_lm.two_step_cfg": ("two_step_cfg", bool, False)},
        extra_keys=(*_DELAY_KEYS, "transformer_lm.two_step_cfg", "classifier_free_guidance.inference_coef"),
        ignored=(("codebooks_pattern.parallel.*", _UNUSED_PATTERN),),
        solver="musicgen", audio_solver="audiogen", client="MusicGen", audio_client="AudioGen",
        transformers_musicgen=True,
    ),
    # facebook/hybrid-magnet-small, -medium: the MAGNeT LM (non-causal, restricted window) trained by audiocraft's
    # hybrid_magnet branch's solver over the delay pattern. The branch's solver reads generate.lm's MAGNeT keys,
    # generates the prompt with the autoregressive defaults and the config's guidance, and takes the prompt's length
    # from generate.lm.max_prompt_len (null in the branch's config: a parameter).
    HybridMagnetTransformer.family: AudiocraftImport(
        lm_model="transformer_lm_magnet", solver="hybrid_magnet", solver_decides=True, causal=False, pattern="delay",
        delays=True, windowed_attention=True, stage_per_item=True,
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
    exact = [family for family, spec in readers if solver and solver in (spec.solver, spec.audio_solver)]
    generic = [family for family, spec in readers if not spec.solver_decides]
    return (exact or generic or [None])[0]
