"""The checkpoint layer's family table: how each family imports from an audiocraft release file (`state_dict.bin`
with its `xp.cfg`) and exports to it (interop/audiocraft_release.py), and whether transformers' MusicGen classes hold
it; None for a family Meta never released (Hybrid-MAGNeT: trained here only).

Keyed by the model families' names (models/registry.py); audiocraft_config.read_lm_config reads it and nothing else
decides what a family's xp.cfg means.
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
    """The `solver` an export's xp.cfg names (audiocraft's loaders do not read it; it says what trained the model)."""
    audio_solver: str = ""
    """`solver` of the family's text-to-sound models (16 kHz, audiocraft's own codec), where Meta named it apart."""
    client: str = ""
    """The audiocraft class whose `get_pretrained` loads the family's release folders (music)."""
    audio_client: str = ""
    """... and its text-to-sound ones."""
    transformers_musicgen: bool = False
    """transformers' `MusicgenForConditionalGeneration` holds this family's models (causal decoder, delay pattern
    0..K-1): `magnet-convert transformers` reads them and `magnet-export --format transformers` writes them."""


_SAMPLING_KEYS = {"use_sampling": "use_sampling", "temp": "temperature", "top_k": "top_k", "top_p": "top_p"}

AUDIOCRAFT_IMPORTS: dict[str, AudiocraftImport | None] = {
    MagnetTransformer.family: AudiocraftImport(
        lm_model="transformer_lm_magnet", causal=False, pattern="parallel", delays=False, windowed_attention=True,
        generation_keys={**_SAMPLING_KEYS, "max_cfg_coef": "max_cfg_coef", "min_cfg_coef": "min_cfg_coef",
                         "decoding_steps": "decoding_steps", "anneal_temp": "anneal_temperature",
                         "span_scoring": "span_scoring", "span_arrangement": "span_arrangement"},
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
        extra_keys=("codebooks_pattern.delay.delays", "codebooks_pattern.delay.flatten_first",
                    "codebooks_pattern.delay.empty_initial", "transformer_lm.two_step_cfg",
                    "classifier_free_guidance.inference_coef"),
        ignored=(("codebooks_pattern.parallel.*", _UNUSED_PATTERN),),
        solver="musicgen", audio_solver="audiogen", client="MusicGen", audio_client="AudioGen",
        transformers_musicgen=True,
    ),
    HybridMagnetTransformer.family: None,  # Meta released no Hybrid-MAGNeT model
}
LM_MODELS = {spec.lm_model: family for family, spec in AUDIOCRAFT_IMPORTS.items() if spec is not None}
DEFAULT_LM_MODEL = AUDIOCRAFT_IMPORTS[MagnetTransformer.family].lm_model
"""audiocraft's default `lm_model` (a config that names none)."""


def family_of_lm_model(lm_model: str) -> str | None:
    """The family an xp.cfg's `lm_model` imports as, or None when no family reads it."""
    return LM_MODELS.get(lm_model)
