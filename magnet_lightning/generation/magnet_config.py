"""MAGNeT's decoding options (`DecodingConfig`) and the presets of the released models (magnet_spec.md §7.1)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from magnet_lightning.generation.options import OptionError, check_fields, option

SPAN_ARRANGEMENTS = ("nonoverlap", "stride1")


SPAN_SCORINGS = ("max", "prod")


STRIDE1_COVERS = ("reference", "minimal")


@dataclass(frozen=True)
class DecodingConfig:
    """Every option of MAGNeT decoding, declared once (generation/options.py). Defaults are the music model's
    (audiocraft `MAGNeT.set_generation_params`)."""

    decoding_steps: tuple[int, ...] = option(
        (20, 10, 10, 10), "decoding steps per codebook stage, e.g. 20 10 10 10 (default: the checkpoint's, [20, 10, "
        "10, 10] up to 10 s and [60, 10, 10, 10] above)", flag="--steps", minimum=1, per_codebook=True)
    span_len: int = 3
    """Span length L in frames: the model's training span (set from the checkpoint; not an option)."""
    span_arrangement: str = option(
        "nonoverlap", "how masked spans are laid out: 'nonoverlap' re-masks whole chunks [cL, cL + L), 'stride1' the "
        "least probable overlapping spans", choices=SPAN_ARRANGEMENTS)
    span_scoring: str = option(
        "max", "a chunk's unconfidence in 'nonoverlap' mode: 'max' = 1 - its largest token probability, 'prod' = "
        "the sum of -log p", choices=SPAN_SCORINGS)
    max_cfg_coef: float = option(10.0, "classifier-free guidance coefficient at the first step (mask rate 1)",
                                 flag="--cfg-max", minimum=0, schedule=True)
    min_cfg_coef: float = option(1.0, "classifier-free guidance coefficient at the last step (mask rate 0)",
                                 flag="--cfg-min", minimum=0, schedule=True)
    temperature: float = option(3.0, "sampling temperature at the first step of each stage", minimum=0,
                                schedule=True)
    anneal_temperature: bool = option(True, "anneal the temperature linearly to 0 at the last step of each stage",
                                      schedule=True)
    top_k: int = option(0, "sample among the k most probable tokens (0: off)", minimum=0)
    top_p: float = option(0.9, "nucleus sampling mass (0: off)", minimum=0, maximum=1)
    use_sampling: bool = option(True, "sample (false: greedy, the argmax of the guided logits at every step)",
                                negate="--greedy", negate_help="argmax instead of sampling (greedy decoding)")
    anneal_from_initial: bool = option(
        False, "departure: the annealed temperature starts at exactly `temperature` (the reference: temperature * "
        "(s-1)/s)", departure=True, schedule=True)
    confidence_before_top_k: bool = option(
        False, "departure: rank top-k samples by their untruncated probability (the reference: the renormalised "
        "top-k one)", departure=True)
    stride1_cover: str = option(
        "reference", "'stride1' span choice: 'reference' (audiocraft's binary search for the number of spans; may "
        "re-mask tokens decoded at an earlier step) or 'minimal' (departure: the fewest top spans covering the "
        "count, decoded tokens kept)", choices=STRIDE1_COVERS)
    mask_upper_stages_in_prompt: bool = option(
        False, "departure: at stage k, stages above k are MASK on prompt frames too (the reference shows them)",
        departure=True, schedule=True)
    rescore_weight: float = option(
        1.0, "paper section 3.3, Eq. 5 (not in audiocraft): spans ranked by w * p_MAGNeT + (1 - w) * p_rescorer; "
        "1 is no rescoring, below 1 needs a rescorer (the paper's Fig. 4 writes the weights the other way round)",
        minimum=0, maximum=1, control=False)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.span_len < 1:
            raise ValueError(f"span_len must be >= 1, got {self.span_len}")
        if self.top_k > 0 and self.top_p > 0:
            raise OptionError("top_k", f"{{set}} and {{top_p}}={self.top_p:g} are both set: the reference samples "
                              "with top_p and ignores top_k; set one of them to 0", self.top_k)

    def check(self, num_codebooks: int) -> None:
        """Raise unless there is exactly one decoding_steps entry per codebook."""
        if len(self.decoding_steps) != num_codebooks:
            raise ValueError(f"decoding_steps has {len(self.decoding_steps)} entries "
                             f"{list(self.decoding_steps)} but the model has {num_codebooks} codebooks: "
                             f"give one number of steps per codebook")

    @property
    def uses_cfg(self) -> bool:
        return not (self.max_cfg_coef == 1.0 and self.min_cfg_coef == 1.0)

    def replace(self, **changes) -> DecodingConfig:
        return replace(self, **changes)


DECODING_PRESETS: dict[str, dict] = {
    # magnet_spec.md §7.1: text-to-music (MAGNeT) and text-to-audio (Audio-MAGNeT) defaults.
    "music": {"top_k": 0, "top_p": 0.9, "temperature": 3.0, "max_cfg_coef": 10.0, "min_cfg_coef": 1.0},
    "audio": {"top_k": 0, "top_p": 0.8, "temperature": 3.5, "max_cfg_coef": 20.0, "min_cfg_coef": 1.0},
}


def default_decoding_steps(duration: float, num_codebooks: int = 4) -> tuple[int, ...]:
    """[20, 10, ...] up to 10 s, [60, 10, ...] for longer (30-s) generations; one entry per codebook."""
    first = 20 if duration <= 10.0 + 1e-6 else 60
    return (first,) + (10,) * (num_codebooks - 1)


def decoding_preset(name: str = "music", duration: float = 10.0, num_codebooks: int = 4, *,
                    config_class: type[DecodingConfig] | None = None, **overrides) -> DecodingConfig:
    """A DecodingConfig (or the subclass `config_class`) from DECODING_PRESETS with steps for `duration`, then
    `overrides`."""
    if name not in DECODING_PRESETS:
        raise ValueError(f"unknown decoding preset {name!r}: choose one of {sorted(DECODING_PRESETS)}")
    values = {**DECODING_PRESETS[name], "decoding_steps": default_decoding_steps(duration, num_codebooks)}
    return (config_class or DecodingConfig)(**{**values, **overrides})
