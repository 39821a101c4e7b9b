"""One batch to decode, at the token level: what every family's decoder reads (generation/families.py dispatches it).

Shapes: B batch, K codebooks, T frames, Tp prompt frames, S text tokens, E text width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from magnet_lightning.generation.common import ProgressFn


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
    generator: torch.Generator | None = None
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
