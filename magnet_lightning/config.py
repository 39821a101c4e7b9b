"""Typed configuration of the MAGNeT transformer and its training objective.

Plain dataclasses: the model never sees a config framework object, and checkpoints store `asdict(...)` so they load
with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ATTENTION_BACKENDS = ("auto", "sdpa", "flex")
HYBRID_STAGE0_ATTENTION = ("stream", "sequence")
TEXT_FUSIONS = ("cross", "prepend")
"""How the text reaches the model: by cross-attention, or projected and prepended to the input (audiocraft's fuser)."""
CHROMA_FUSIONS = ("prepend", "frames")
"""How a melody's chroma reaches the model: prepended to the input (MusicGen-melody's release), or aligned in time
with the frames and added to each frame's input (this project's, for MAGNeT and Hybrid-MAGNeT)."""


@dataclass
class ModelConfig:
    """Sizes of the MAGNeT transformer (magnet_spec.md §3)."""

    dim: int = 1024
    """Model width D."""
    num_heads: int = 16
    """Attention heads; head width is dim / num_heads."""
    num_layers: int = 24
    """Transformer layers, each self-attention + cross-attention + FFN."""
    ffn_dim: int = 4096
    """Hidden width of the GELU feed-forward block (hidden_scale * dim in audiocraft)."""
    num_codebooks: int = 4
    """K: residual codebooks of the codec (n_q)."""
    codebook_size: int = 2048
    """V: entries per codebook (card). Token id V is the MASK token."""
    text_dim: int = 768
    """E: width of the text-encoder states (768 for t5-base, 1024 for t5-large)."""
    subcodes_context: int = 5
    """Stages >= 1 attend to frames with |t - s| <= subcodes_context; -1 disables the restriction."""
    hybrid_stage0_attention: str = "stream"
    """Hybrid-MAGNeT only: what MAGNeT's stage-0 rows attend to: 'stream' (the steps of stream 0, as audiocraft's
    hybrid_magnet branch lays out its mask) or 'sequence' (every step, as MAGNeT's stage 0); models/hybrid.py."""
    attention: str = "auto"
    """Self-attention backend for the restricted window: 'auto' (flex on CUDA, sdpa elsewhere), 'sdpa' or 'flex'."""
    norm_eps: float = 1e-5
    """LayerNorm epsilon."""
    max_period: float = 10_000.0
    """Longest period of the sinusoidal positional encoding."""
    text_fuse: str = "cross"
    """'cross': text by cross-attention (the MAGNeT and MusicGen releases); 'prepend': the projected text in front of
    the input and layers without cross-attention (MusicGen-melody, audiocraft's `fuser.prepend`)."""
    chroma_bins: int = 0
    """Melody conditioning: bins of the chroma condition (12), projected to D by `chroma_proj`; 0 for none."""
    chroma_fuse: str = "prepend"
    """How the chroma enters: 'prepend' (in front of the input, before the text: MusicGen-melody's release) or
    'frames' (aligned in time with the frames, added to each frame's input: MAGNeT and Hybrid-MAGNeT)."""

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if (self.dim // 2) < 2:
            raise ValueError("dim must be at least 4 for the sinusoidal positions")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention={self.attention!r}: choose one of {ATTENTION_BACKENDS}")
        if self.hybrid_stage0_attention not in HYBRID_STAGE0_ATTENTION:
            raise ValueError(f"hybrid_stage0_attention={self.hybrid_stage0_attention!r}: choose one of "
                             f"{HYBRID_STAGE0_ATTENTION}")
        if self.text_fuse not in TEXT_FUSIONS or self.chroma_fuse not in CHROMA_FUSIONS:
            raise ValueError(f"text_fuse={self.text_fuse!r}, chroma_fuse={self.chroma_fuse!r}: choose text_fuse in "
                             f"{TEXT_FUSIONS} and chroma_fuse in {CHROMA_FUSIONS}")
        if self.chroma_bins < 0:
            raise ValueError(f"chroma_bins must be >= 0 (0: no melody conditioning), got {self.chroma_bins}")
        if self.subcodes_context < -1:
            raise ValueError("subcodes_context must be >= 0, or -1 for unrestricted attention")
        for name in ("num_layers", "ffn_dim", "num_codebooks", "codebook_size", "text_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def mask_token_id(self) -> int:
        return self.codebook_size

    @property
    def cross_attention(self) -> bool:
        """The layers have cross-attention (to the text)."""
        return self.text_fuse == "cross"

    @property
    def prefix(self) -> bool:
        """Conditions are prepended to the input (the text, or a melody's chroma)."""
        return self.text_fuse == "prepend" or bool(self.chroma_bins and self.chroma_fuse == "prepend")

    def num_parameters(self) -> int:
        """Parameter count of the transformer (no text encoder), without building it."""
        d, k, v = self.dim, self.num_codebooks, self.codebook_size
        attention = (2 if self.cross_attention else 1) * (4 * d * d + 2 * d)
        layer = attention + 2 * d * self.ffn_dim + 2 * d
        chroma = (self.chroma_bins + 1) * d if self.chroma_bins else 0
        return self.num_layers * layer + k * (v + 1) * d + k * v * d + 2 * d + self.text_dim * d + d + chroma

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # magnet_spec.md §3.2; "small" is the paper's 300M model (≈420 M parameters), "medium" the paper's 1.5B.
    "small": dict(dim=1024, num_heads=16, num_layers=24, ffn_dim=4096),
    "medium": dict(dim=1536, num_heads=24, num_layers=48, ffn_dim=6144),
    "large": dict(dim=2048, num_heads=32, num_layers=48, ffn_dim=8192),
    # For tests and the CPU demo.
    "tiny": dict(dim=64, num_heads=4, num_layers=2, ffn_dim=256),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """A named size from MODEL_PRESETS with field overrides (e.g. text_dim=1024 for t5-large)."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}: choose one of {sorted(MODEL_PRESETS)}")
    return ModelConfig(**{**MODEL_PRESETS[name], **overrides})


@dataclass
class MaskingConfig:
    """The span-masked training objective (magnet_spec.md §4)."""

    span_len: int = 3
    """Span length L in frames (3 frames = 60 ms at 50 Hz)."""
    per_sample_stage: bool = False
    """Draw the codebook stage per sample instead of once per micro-batch (the reference)."""
    stage_weights: list[float] = field(default_factory=list)
    """Optional sampling weights of the stages; empty = uniform."""

    def __post_init__(self) -> None:
        if self.span_len < 1:
            raise ValueError(f"span_len must be >= 1, got {self.span_len}")
        if any(w < 0 for w in self.stage_weights) or (self.stage_weights and sum(self.stage_weights) <= 0):
            raise ValueError(f"stage_weights must be non-negative with a positive sum, got {self.stage_weights}")


STEM_MODELS = ("htdemucs", "none")


@dataclass
class MelodyConfig:
    """How a melody waveform becomes the chroma condition: audiocraft's `ChromaStemConditioner` with the settings of
    its release config (config/conditioner/chroma2music.yaml), the defaults here."""

    sample_rate: int = 32000
    """Rate of the waveform the chroma is computed on (the model's; the stems are converted back to it)."""
    n_chroma: int = 12
    """Chroma bins (the model's `chroma_bins`)."""
    radix2_exp: int = 14
    """STFT window 2**radix2_exp samples (hop a quarter of it: 4096 at 14, 7.8 chroma frames/s at 32 kHz)."""
    argmax: bool = True
    """Keep only the strongest bin of each frame (one-hot chroma)."""
    stems: str = "htdemucs"
    """'htdemucs': drums and bass removed by demucs' htdemucs first (the reference); 'none': the chroma of the whole
    mix (no stem model needed: demos, or audio that is already a melody)."""
    duration: float = 30.0
    """Seconds the chroma prefix covers at inference ('prepend' fusion: the melody tiled or cut to it, as the
    reference's `match_len_on_eval`); the training segment of the release."""
    attribute_dropout: float = 0.5
    """Training: probability of dropping the melody of a micro-batch (its own attribute dropout, on top of the
    classifier-free-guidance dropout that drops text and melody together)."""

    def __post_init__(self) -> None:
        if self.stems not in STEM_MODELS:
            raise ValueError(f"melody.stems={self.stems!r}: choose one of {STEM_MODELS}")
        if self.n_chroma < 1 or self.radix2_exp < 5 or self.sample_rate < 1 or self.duration <= 0:
            raise ValueError(f"melody needs n_chroma >= 1, radix2_exp >= 5, sample_rate >= 1, duration > 0; got "
                             f"{self.n_chroma}, {self.radix2_exp}, {self.sample_rate}, {self.duration}")
        if not 0 <= self.attribute_dropout <= 1:
            raise ValueError(f"melody.attribute_dropout must be in [0, 1], got {self.attribute_dropout}")

    @property
    def hop_length(self) -> int:
        return 2 ** self.radix2_exp // 4

    @property
    def chroma_rate(self) -> float:
        """Chroma frames per second."""
        return self.sample_rate / self.hop_length

    def num_chroma_frames(self, num_samples: int) -> int:
        """Chroma frames of a waveform of N samples (centred STFT: 1 + N // hop; at least that of one window)."""
        return 1 + max(num_samples, 2 ** self.radix2_exp) // self.hop_length

    @property
    def prefix_frames(self) -> int:
        """Chroma frames of `duration` seconds: the prefix length at inference (the reference's `chroma_len`)."""
        return self.num_chroma_frames(int(self.sample_rate * self.duration))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MelodyConfig:
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """`cls(**data)`; ValueError naming every key that is not a field of `cls`."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**data)
