"""Hybrid-MAGNeT generation (models/hybrid.py): the same model generates the first `prompt_frames` autoregressively
(the autoregressive family's KV-cached decoding: its causal forward is the prompt part of the hybrid model), then the
rest with MAGNeT's iterative decoding (magnet.decode, every option of DecodingConfig), the delay-shifted prompt
fixed: stream k keeps its first prompt_frames - d_k frames, the codes before the boundary step.

A user's prompt (audio continuation) is the start of the autoregressive part: its frames are kept, the autoregressive
decoding continues it up to `prompt_frames` (or not at all when the prompt is already that long), and MAGNeT decodes
the rest. Long-form generation (`window_frames`, `stride_frames`; long_form.py) chains such continuations, the
previous window's tail as each window's prompt.

Shapes: B batch, K codebooks, T frames, Tp prompt frames, S text tokens, E text width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from magnet_lightning.generation.autoregressive import ARDecodingConfig
from magnet_lightning.generation.autoregressive import generate as ar_generate
from magnet_lightning.generation.autoregressive import num_steps as ar_steps
from magnet_lightning.generation.common import ProgressFn
from magnet_lightning.generation.long_form import extend
from magnet_lightning.generation.magnet import decode
from magnet_lightning.generation.magnet_config import DecodingConfig
from magnet_lightning.generation.options import option
from magnet_lightning.generation.request import DecodeRequest
from magnet_lightning.models.delay_pattern import DelayPattern
from magnet_lightning.models.hybrid import BoundHybrid, HybridMagnetTransformer

DEFAULT_PROMPT_SECONDS = 3.0
"""The paper's scale of the autoregressive prompt (a few seconds)."""


@dataclass(frozen=True)
class HybridDecodingConfig(DecodingConfig):
    """MAGNeT's decoding options for the part after the prompt, and the prompt's length."""

    prompt_seconds: float | None = option(
        None, "seconds generated autoregressively first, by a Hybrid-MAGNeT checkpoint itself or by the "
        f"autoregressive partner of two-model generation (default: the checkpoint's, else {DEFAULT_PROMPT_SECONDS:g})",
        flag="--hybrid-prompt-seconds", above=0, unit="s")
    ar_cfg_coef: float = option(
        3.0, "classifier-free guidance of the autoregressive prompt (a release's classifier_free_guidance."
        "inference_coef); its other options are the reference's (audiocraft's hybrid_magnet solver): sampling, top-k "
        "250, temperature 1", minimum=0)


def autoregressive_frames(pattern: DelayPattern, num_frames: int, prompt_frames: int,
                          given_frames: int = 0) -> int:
    """Frames of the autoregressive part of a generation of T frames: `prompt_frames`, raised after a given prompt of
    Tp frames to Tp + max_delay (every delay-shifted stream keeps the whole prompt) but at most T - 1 (a short
    long-form window: the prompt frames past the boundary are then fixed in MAGNeT's part)."""
    if given_frames:
        return min(max(prompt_frames, given_frames + pattern.max_delay), num_frames - 1)
    return prompt_frames


def _autoregressive_prompt(model: HybridMagnetTransformer, text_states, text_mask, prompt_frames: int,
                           user_prompt: torch.Tensor | None, ar_config: ARDecodingConfig, batch: int,
                           generator: torch.Generator | None, progress: ProgressFn | None, melody=None) -> torch.Tensor:
    """long [B, K, prompt_frames]: the user's prompt continued autoregressively (or generated from nothing)."""
    if user_prompt is not None and user_prompt.shape[-1] >= prompt_frames:
        return user_prompt[..., :prompt_frames]
    return ar_generate(model, text_states, text_mask, prompt_frames, ar_config, user_prompt, batch_size=batch,
                       generator=generator, progress=progress, melody=melody)


@torch.no_grad()
def _checked_frames(model: HybridMagnetTransformer, num_frames: int, prompt_frames: int,
                    prompt: torch.Tensor | None) -> tuple[int, int]:
    """(frames of the user's prompt, frames of the autoregressive prompt), checked against the T frames."""
    given_frames = 0 if prompt is None else prompt.shape[-1]
    if given_frames >= num_frames:
        raise ValueError(f"the prompt has {given_frames} frames, not fewer than the {num_frames} to generate")
    prompt_frames = autoregressive_frames(model.pattern, num_frames, prompt_frames, given_frames)
    if not 0 <= prompt_frames < num_frames:
        raise ValueError(f"prompt_frames={prompt_frames} (the autoregressive prompt) must be in [0, num_frames="
                         f"{num_frames})")
    return given_frames, prompt_frames


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
    melody=None,
) -> torch.Tensor:
    """Generate codes [B, K, T] with one Hybrid-MAGNeT model: `prompt_frames` (0 <= P < T) autoregressively with
    `ar_config` (continuing `prompt` long [B, K, Tp] when given: `autoregressive_frames`), the rest with MAGNeT's
    decoding and `config`. text_states [B, S, E] / text_mask [B, S], or None (unconditional; give batch_size).
    window_frames / stride_frames: long-form generation (W, S; each window's autoregressive part at most W - 1).
    melody: the melody condition (models.melody.ChromaCondition, 'frames' rows over the T frames), or None."""
    if window_frames is not None or stride_frames is not None:
        def window(window_prompt, w, window_progress):
            frames = w.length
            return generate(model, text_states, text_mask, frames, min(prompt_frames, frames - 1), config, ar_config,
                            prompt=window_prompt, batch_size=batch_size, generator=generator,
                            progress=window_progress,
                            melody=None if melody is None else melody.window(w.index, w.start, w.length))

        return extend(window, num_frames, window_frames, stride_frames, prompt, progress=progress,
                      window_steps=lambda w: num_steps(model.pattern, config, w.length,
                                                       min(prompt_frames, w.length - 1), w.prompt))
    given_frames, prompt_frames = _checked_frames(model, num_frames, prompt_frames, prompt)
    device = next(model.parameters()).device
    batch = text_states.shape[0] if text_states is not None else melody.batch if melody is not None else batch_size
    if batch is None:
        raise ValueError("unconditional generation needs batch_size")
    boundary = torch.full((batch,), prompt_frames + 1, dtype=torch.long, device=device)
    given = torch.full((batch, model.cfg.num_codebooks, num_frames), model.mask_token_id, dtype=torch.long,
                       device=device)
    fixed = model.prompt_mask(boundary, num_frames)  # [B, K, T]
    fixed[..., :given_frames] = True
    total, done = num_steps(model.pattern, config, num_frames, prompt_frames, given_frames), [0]

    def ar_progress(step: int, _total: int) -> None:
        done[0] = step
        if progress is not None:
            progress(step, total)

    if prompt_frames > 0:
        codes = _autoregressive_prompt(model, text_states, text_mask, prompt_frames, prompt, ar_config, batch,
                                       generator, ar_progress, melody)  # rows of all T frames: the steps' own
        given[..., :prompt_frames] = codes
        given = given.masked_fill(~fixed, model.mask_token_id)
    rest = None if progress is None else (lambda step, _total: progress(done[0] + step, total))
    return decode(BoundHybrid(model, boundary), text_states, text_mask, num_frames, config, batch_size=batch,
                  given=given, fixed=fixed, generator=generator, progress=rest, melody=melody)


def decode_request(model: HybridMagnetTransformer, request: DecodeRequest) -> torch.Tensor:
    """Hybrid-MAGNeT's decoder for the family table. Returns long [B, K, T]."""
    ar_config = ARDecodingConfig(cfg_coef=getattr(request.config, "ar_cfg_coef", ARDecodingConfig.cfg_coef))
    return generate(model, request.text_states, request.text_mask, request.num_frames, request.prompt_frames,
                    request.config, ar_config, prompt=request.prompt, batch_size=request.batch_size,
                    generator=request.generator, progress=request.progress, window_frames=request.window_frames,
                    stride_frames=request.stride_frames, melody=request.melody)


def num_steps(pattern: DelayPattern, config: DecodingConfig, num_frames: int, prompt_frames: int,
              given_frames: int = 0) -> int:
    """Model steps of one generation (one window; what `progress` counts): the autoregressive part's after the
    `given_frames` given ones, then MAGNeT's."""
    ar_frames = autoregressive_frames(pattern, num_frames, prompt_frames, given_frames)
    prompt_steps = ar_steps(pattern, None, ar_frames, 0, given_frames) if ar_frames > given_frames else 0
    return sum(config.decoding_steps) + prompt_steps
