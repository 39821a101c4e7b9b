"""Hybrid-MAGNeT generation (models/hybrid.py): the same model generates the first `prompt_frames` autoregressively
(the autoregressive family's KV-cached decoding: its causal forward is the prompt part of the hybrid model), then the
rest with MAGNeT's iterative decoding (decoding.decode, every option of DecodingConfig), the delay-shifted prompt
fixed: stream k keeps its first prompt_frames - d_k frames, the codes before the boundary step.

A given `prompt` of Tp frames is continued: the autoregressive part generates frames Tp .. max(prompt_frames, Tp)
after it (none when the prompt is at least `prompt_frames` long), the boundary follows them, and MAGNeT decodes the
rest with every prompt frame fixed. Long-form generation (`window_frames`, `stride_frames`) chains such
continuations, the previous window's tail as each window's prompt (long_form.py).

Shapes: B batch, K codebooks, T frames, S text tokens, E text width.
"""

from __future__ import annotations

import torch

from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.autoregressive import generate as ar_generate
from magnet_lightning.generation.autoregressive import num_steps as ar_steps
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.long_form import extend
from magnet_lightning.generation.magnet import decode
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.models.hybrid import BoundHybrid, HybridMagnetTransformer

DEFAULT_PROMPT_SECONDS = 3.0
"""The paper's scale of the autoregressive prompt (a few seconds)."""


def num_steps(model: HybridMagnetTransformer, config: DecodingConfig, num_frames: int, prompt_frames: int,
              given_frames: int = 0) -> int:
    """Model steps of one window of T frames after Tp = given_frames given ones (what `progress` counts)."""
    ar_frames = max(min(prompt_frames, num_frames - 1), given_frames)
    return (ar_steps(model, ar_frames, given_frames) if ar_frames > given_frames else 0) + sum(config.decoding_steps)


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
    prompt: torch.Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressFn | None = None,
    window_frames: int | None = None,
    stride_frames: int | None = None,
) -> torch.Tensor:
    """Generate codes [B, K, T] with one Hybrid-MAGNeT model: up to `prompt_frames` (0 <= P < T) autoregressively
    with `ar_config`, after the given `prompt` [B, K, Tp] if any (kept in front), the rest with MAGNeT's decoding and
    `config`. text_states [B, S, E] / text_mask [B, S], or None (unconditional; give batch_size). window_frames /
    stride_frames: long-form generation (W, S; each window's autoregressive part is at most W - 1 frames)."""
    if window_frames is not None or stride_frames is not None:
        def window(window_prompt, frames, window_progress):
            return generate(model, text_states, text_mask, frames, min(prompt_frames, frames - 1), config, ar_config,
                            prompt=window_prompt, batch_size=batch_size, generator=generator,
                            progress=window_progress)

        return extend(window, num_frames, window_frames, stride_frames, prompt, progress=progress,
                      window_steps=lambda w: num_steps(model, config, w.length, prompt_frames, w.prompt))
    if not 0 <= prompt_frames < num_frames:
        raise ValueError(f"prompt_frames={prompt_frames} must be in [0, num_frames={num_frames})")
    given_len = 0 if prompt is None else prompt.shape[-1]
    if given_len >= num_frames:
        raise ValueError(f"the prompt has {given_len} frames, not fewer than the {num_frames} to generate")
    device = next(model.parameters()).device
    batch = text_states.shape[0] if text_states is not None else batch_size
    if batch is None:
        raise ValueError("unconditional generation needs batch_size")
    ar_frames = max(prompt_frames, given_len)
    boundary = torch.full((batch,), ar_frames + 1, dtype=torch.long, device=device)
    fixed = model.prompt_mask(boundary, num_frames)  # [B, K, T]
    fixed[..., :given_len] = True
    given = torch.full((batch, model.cfg.num_codebooks, num_frames), model.mask_token_id, dtype=torch.long,
                       device=device)
    total = num_steps(model, config, num_frames, prompt_frames, given_len)
    done = [0]
    if ar_frames > given_len:
        def ar_progress(step: int, _total: int) -> None:
            done[0] = step
            if progress is not None:
                progress(step, total)

        given[..., :ar_frames] = ar_generate(model, text_states, text_mask, ar_frames, ar_config, prompt,
                                             batch_size=batch, generator=generator, progress=ar_progress)
    elif given_len:
        given[..., :given_len] = prompt.to(device)
    given = given.masked_fill(~fixed, model.mask_token_id)
    rest = None if progress is None else (lambda step, _total: progress(done[0] + step, total))
    return decode(BoundHybrid(model, boundary), text_states, text_mask, num_frames, config, batch_size=batch,
                  given=given, fixed=fixed, generator=generator, progress=rest)
