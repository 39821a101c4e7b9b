"""What a generation asks for, at two levels: `GenerationRequest`, the caller's request in seconds before anything is
loaded (generation/plan.py turns it into a checked plan; its generation-level options are declared here, once), and
`DecodeRequest`, one batch to decode at the token level, what every family's decoder reads (generation/families.py
dispatches it).

Shapes: B batch, K codebooks, T frames, Tp prompt frames, S text tokens, E text width.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from magnet_lightning.checkpoint.facts import CheckpointFacts
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.magnet_config import DECODING_PRESETS
from magnet_lightning.generation.options import check_fields, option


@dataclass(frozen=True)
class GenerationRequest:
    """What one generation asks for, before anything is loaded: the generation-level options (declared here,
    once) and the inputs' lengths."""

    duration: float | None = option(None, "seconds to generate (default: the checkpoint's segment); longer runs in "
                                    "windows of the segment (long-form generation)", above=0, unit="s")
    extend_stride: float | None = option(
        None, "long-form generation: seconds each window advances (it continues the last segment - stride seconds "
        "of the one before); default: the family's, 0.6 of the segment (18 s for a 30-s model, as audiocraft's "
        "MusicGen)", above=0, metavar="SECONDS", unit="s")
    preset: str | None = option(None, "decoding defaults of the MAGNeT families (default: the checkpoint's, else "
                                "music)", choices=tuple(sorted(DECODING_PRESETS)))
    options: Mapping[str, Any] = field(default_factory=dict)
    """Decoding options set by the caller (names of the family's config; None values are ignored)."""
    prompt_frames: int = 0
    """Frames of a clip to continue (0: none)."""
    infill: tuple[float, float] | None = None
    """Seconds [start, end) of the clip (`clip_frames` long) to regenerate."""
    clip_frames: int | None = None
    """Frames of the clip to edit (with `infill`)."""
    rescorer: CheckpointFacts | None = None
    """An autoregressive checkpoint that rescores the spans (paper section 3.3)."""
    two_model: CheckpointFacts | None = None
    """An autoregressive checkpoint that generates the first `prompt_seconds` (two-model generation, section 3.4)."""
    melody: bool = False
    """A melody clip is given (melody-conditioned checkpoints: `CheckpointFacts.melody`)."""
    config: Any = None
    """A whole decoding config of the family's class instead of preset + recorded options + `options`."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class DecodeRequest:
    config: Any
    """The family's decoding options (DecodingConfig, ARDecodingConfig, HybridDecodingConfig)."""
    text_states: torch.Tensor | None
    """[B, S, E] text-encoder states, or None (unconditional)."""
    text_mask: torch.Tensor | None
    """bool [B, S]."""
    batch_size: int
    num_frames: int
    """T, the output length (the prompt's frames included)."""
    prompt: torch.Tensor | None = None
    """long [B, K, Tp]: frames to continue (kept in front); with `infill`, the whole clip [B, K, T] to edit."""
    infill: tuple[int, int] | None = None
    """Frames [start, end) of `prompt` to regenerate (everything else kept)."""
    prompt_frames: int = 0
    """Hybrid-MAGNeT: frames generated autoregressively before MAGNeT takes over (a user prompt's count included)."""
    generator: torch.Generator | list[torch.Generator] | None = None
    """One generator for the batch, or one per row (generation/sampling.py `draw_noise`)."""
    progress: ProgressFn | None = None
    rescorer: Any = None
    """rescoring.ARRescorer of this batch (MAGNeT spans ranked with an autoregressive model's probabilities)."""
    fast: Any = None
    """fast.FastDecoder to run MAGNeT's steps on static buffers, or None (the plain loop)."""
    window_frames: int | None = None
    """Long-form generation (long_form.py): windows of W frames (at most the training segment); None: one window."""
    stride_frames: int | None = None
    """Long-form generation: frames each window advances (1 <= S < W)."""
    melody: Any = None
    """models.melody.ChromaCondition of a melody-conditioned model (generation/melody.py builds it), or None."""
