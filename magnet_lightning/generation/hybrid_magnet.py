"""Hybrid-MAGNeT generation (models/hybrid.py): the same model generates the first `prompt_frames` autoregressively
(the autoregressive family's KV-cached decoding: its causal forward is the prompt part of the hybrid model), then the
rest with MAGNeT's iterative decoding (decoding.decode, every option of DecodingConfig), the delay-shifted prompt
fixed: stream k keeps its first prompt_frames - d_k frames, the codes before the boundary step.

Shapes: B batch, K codebooks, T frames, S text tokens, E text width.
"""

from __future__ import annotations

import torch

from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.autoregressive import generate as ar_generate
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.magnet import decode
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.models.hybrid import BoundHybrid, HybridMagnetTransformer

DEFAULT_PROMPT_SECONDS = 3.0
"""The paper's scale of the autoregressive prompt (a few seconds)."""


@torch.no_grad()
def generate(
    model: HybridMagnetTransformer,
    text_states: torch.Tensor | None,
    text_mask: torch.Tensor | None,
    num_frames: int,
    prompt_frames: int,
    config: DecodingConfig = DecodingConfig(),
    ar_config: ARDecodingConfig = ARDecodingConfig(),
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Generate codes [B, K, T] with one Hybrid-MAGNeT model: `prompt_frames` (0 <= P < T) autoregressively with
    `ar_config`, the rest with MAGNeT's decoding and `config`. text_states [B, S, E] / text_mask [B, S], or None
    (unconditional; give batch_size)."""
    if not 0 <= prompt_frames < num_frames:
        raise ValueError(f"prompt_frames={prompt_frames} must be in [0, num_frames={num_frames})")
    device = next(model.parameters()).device
    batch = text_states.shape[0] if text_states is not None else batch_size
    if batch is None:
        raise ValueError("unconditional generation needs batch_size")
    boundary = torch.full((batch,), prompt_frames + 1, dtype=torch.long, device=device)
    given = torch.full((batch, model.cfg.num_codebooks, num_frames), model.mask_token_id, dtype=torch.long,
                       device=device)
    fixed = model.prompt_mask(boundary, num_frames)  # [B, K, T]
    done = [0]
    if prompt_frames > 0:
        def ar_progress(step: int, _total: int) -> None:
            done[0] = step
            if progress is not None:
                progress(step, _total)

        prompt = ar_generate(model, text_states, text_mask, prompt_frames, ar_config, batch_size=batch,
                             generator=generator, progress=ar_progress)
        given[..., :prompt_frames] = prompt
        given = given.masked_fill(~fixed, model.mask_token_id)
    rest = None if progress is None else (lambda step, total: progress(done[0] + step, total))
    return decode(BoundHybrid(model, boundary), text_states, text_mask, num_frames, config, batch_size=batch,
                  given=given, fixed=fixed, generator=generator, progress=rest)
