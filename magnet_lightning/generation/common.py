"""What every family's decoder shares: the CFG rows ([conditional; null] with a zero-state null condition), the
text inputs of a batch (conditioned or not), bf16 autocast on CUDA, and the progress callback type.

Shapes: B batch, S text tokens, E text width, K codebooks, T frames.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def null_condition(text_states: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The CFG null condition with the same padding length: zero states, all-False mask."""
    return torch.zeros_like(text_states), torch.zeros_like(text_mask)


def guidance_batch(text_states: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[cond; null] batched together: states [2B, S, E], mask [2B, S]."""
    null_states, null_mask = null_condition(text_states, text_mask)
    return torch.cat([text_states, null_states]), torch.cat([text_mask, null_mask])


def text_inputs(
    text_states: torch.Tensor | None, text_mask: torch.Tensor | None, batch_size: int | None, text_dim: int,
    device: torch.device, melody=None,
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """(states [B, S, E], mask [B, S], B, conditioned). No text -> one all-masked zero token per item (B: the
    melody's rows, else `batch_size`); a melody (models.melody.ChromaCondition) conditions the batch too."""
    if text_states is None:
        batch_size = melody.batch if melody is not None else batch_size
        if batch_size is None:
            raise ValueError("unconditional generation needs batch_size")
        states = torch.zeros(batch_size, 1, text_dim, device=device)
        return states, torch.zeros(batch_size, 1, dtype=torch.bool, device=device), batch_size, melody is not None
    if text_states.dim() != 3 or text_states.shape[-1] != text_dim:
        raise ValueError(f"text_states must be [B, S, {text_dim}], got {tuple(text_states.shape)}")
    if text_mask is None:
        text_mask = torch.ones(text_states.shape[:2], dtype=torch.bool, device=device)
    if batch_size is not None and batch_size != text_states.shape[0]:
        raise ValueError(f"batch_size={batch_size} but text_states has {text_states.shape[0]} rows")
    return text_states.to(device).float(), text_mask.to(device).bool(), text_states.shape[0], True


def condition_memory(model, states: torch.Tensor, mask: torch.Tensor, use_cfg: bool, melody=None):
    """The model's TextMemory of a batch: text states [B, S, E] / mask [B, S] and a melody (models.melody.
    ChromaCondition, or None), as [conditional; null] rows (2B) with classifier-free guidance."""
    if use_cfg:
        return model.prepare_text(*guidance_batch(states, mask), None if melody is None else melody.guidance())
    return model.prepare_text(states, mask, None if melody is None else melody.cond)


ProgressFn = Callable[[int, int], None]
"""progress(done_steps, total_steps)."""


StageFn = Callable[[int, torch.Tensor], None]
"""on_stage_end(stage, codes [B, K, T]) after the last step of each stage (inspection, tests)."""


def autocast_context(device: torch.device, enabled: bool | None, cache_enabled: bool = True):
    """bf16 autocast on CUDA by default, nothing elsewhere (the weight-cast cache must be off in CUDA graphs)."""
    enabled = device.type == "cuda" if enabled is None else enabled
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=cache_enabled)
