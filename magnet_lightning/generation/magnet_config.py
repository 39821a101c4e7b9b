"""MAGNeT's decoding options (`DecodingConfig`) and the presets of the released models (magnet_spec.md §7.1)."""

from __future__ import annotations

from dataclasses import dataclass, replace

SPAN_ARRANGEMENTS = ("nonoverlap", "stride1")


SPAN_SCORINGS = ("max", "prod")


STRIDE1_COVERS = ("reference", "minimal")


@dataclass(frozen=True)
class DecodingConfig:
    """Every option of MAGNeT decoding. Defaults are the music model's (audiocraft `MAGNeT.set_generation_params`)."""

    decoding_steps: tuple[int, ...] = (20, 10, 10, 10)
    """Steps per codebook stage; one entry per codebook ([60, 10, 10, 10] for 30-s models)."""
    span_len: int = 3
    """Span length L in frames (the model's training span)."""
    span_arrangement: str = "nonoverlap"
    """'nonoverlap': re-mask whole chunks [cL, cL + L); 'stride1': least probable overlapping spans."""
    span_scoring: str = "max"
    """Chunk unconfidence in 'nonoverlap' mode: 'max' = 1 - max token probability, 'prod' = sum of -log p."""
    max_cfg_coef: float = 10.0
    """Guidance coefficient at the first step (mask rate 1)."""
    min_cfg_coef: float = 1.0
    """Guidance coefficient at the last step (mask rate 0)."""
    temperature: float = 3.0
    """Sampling temperature at the first step of each stage."""
    anneal_temperature: bool = True
    """Linearly anneal the temperature to 0 at the last step of each stage."""
    top_k: int = 0
    """Keep the k most probable tokens (0: off)."""
    top_p: float = 0.9
    """Nucleus sampling mass (0: off)."""
    use_sampling: bool = True
    """False: greedy (argmax of the guided logits) at every step."""
    anneal_from_initial: bool = False
    """Departure: the annealed temperature starts at exactly `temperature` (the reference: temperature * (s-1)/s)."""
    confidence_before_top_k: bool = False
    """Departure: rank top-k samples by their untruncated probability (the reference: the renormalised top-k one)."""
    stride1_cover: str = "reference"
    """'stride1' span choice: 'reference' (audiocraft's binary search for the number of spans; may re-mask tokens
    decoded at an earlier step) or 'minimal' (departure: the fewest top spans covering the count, decoded tokens
    kept)."""
    mask_upper_stages_in_prompt: bool = False
    """Departure: at stage k, stages above k are MASK on prompt frames too (the reference shows them)."""
    rescore_weight: float = 1.0
    """Paper §3.3, Eq. 5 (not in audiocraft): spans are ranked by w * p_MAGNeT + (1 - w) * p_rescorer, w this weight;
    1.0 is no rescoring. Needs a rescorer (rescoring.py). The paper's Fig. 4 writes the weights the other way round."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoding_steps", tuple(int(s) for s in self.decoding_steps))
        if not self.decoding_steps or any(s < 1 for s in self.decoding_steps):
            raise ValueError(f"decoding_steps must be positive integers, got {list(self.decoding_steps)}")
        if self.span_len < 1:
            raise ValueError(f"span_len must be >= 1, got {self.span_len}")
        if self.span_arrangement not in SPAN_ARRANGEMENTS:
            raise ValueError(f"span_arrangement={self.span_arrangement!r}: choose one of {SPAN_ARRANGEMENTS}")
        if self.span_scoring not in SPAN_SCORINGS:
            raise ValueError(f"span_scoring={self.span_scoring!r}: choose one of {SPAN_SCORINGS}")
        if self.temperature < 0 or self.top_k < 0 or not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 <= top_p <= 1; got {self.temperature}, "
                             f"{self.top_k}, {self.top_p}")
        if self.top_k > 0 and self.top_p > 0:
            raise ValueError(f"top_k={self.top_k} and top_p={self.top_p} are both set: the reference samples with "
                             "top_p and ignores top_k; set one of them to 0")
        if not 0.0 <= self.rescore_weight <= 1.0:
            raise ValueError(f"rescore_weight must be in [0, 1] (1: no rescoring), got {self.rescore_weight}")
        if self.stride1_cover not in STRIDE1_COVERS:
            raise ValueError(f"stride1_cover={self.stride1_cover!r}: choose one of {STRIDE1_COVERS}")

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
