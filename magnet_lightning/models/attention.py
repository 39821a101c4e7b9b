"""Self-attention with MAGNeT's restricted context window: the one place the window lives (magnet_spec.md §5).

Stage 0 attends over the whole sequence; stages >= 1 let frame t see only frames s with |t - s| <= window.
No dense float mask per batch and head is ever built:
- 'sdpa': `scaled_dot_product_attention` with one boolean band [T, T] shared by batch and heads (cached), or with no
  mask at all for stage 0 (flash kernels apply);
- 'flex': FlexAttention with a cached `BlockMask`, whose blocks outside the band are skipped. On CUDA the kernel is
  compiled once; on CPU it runs eagerly (exact, slow: for tests).
Per-sample stages ([B] tensor) use a [B, 1, T, T] boolean mask (sdpa) or a batch-aware block mask (flex).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' -> 'flex' on CUDA, 'sdpa' elsewhere."""
    if backend == "auto":
        return "flex" if device.type == "cuda" else "sdpa"
    return backend


@lru_cache(maxsize=64)
def band_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """bool [T, T], True where |t - s| <= window."""
    pos = torch.arange(seq_len, device=device)
    return (pos[:, None] - pos[None, :]).abs() <= window


def _window_mask_mod(window: int):
    def mask_mod(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() <= window

    return mask_mod


@lru_cache(maxsize=64)
def _block_mask(seq_len: int, window: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(_window_mask_mod(window), None, None, seq_len, seq_len, device=device)


def _per_sample_block_mask(full: torch.Tensor, seq_len: int, window: int):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        return full[b] | ((q_idx - kv_idx).abs() <= window)

    return create_block_mask(mask_mod, full.shape[0], None, seq_len, seq_len, device=full.device)


_compiled_flex = None


def _flex_attention(q, k, v, block_mask):
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type != "cuda":
        return flex_attention(q, k, v, block_mask=block_mask)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask)


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    stage: int | torch.Tensor,
    window: int,
    backend: str = "auto",
) -> torch.Tensor:
    """Attention of q over k/v restricted to |t - s| <= window for stages >= 1.

    Args:
        q, k, v: [B, H, T, Dh].
        stage: an int (one stage for the batch) or long [B] (per-sample stages).
        window: subcodes_context; a negative value means unrestricted.
        backend: 'auto', 'sdpa' or 'flex'.
    Returns:
        [B, H, T, Dh].
    """
    seq_len = q.shape[-2]
    per_sample = isinstance(stage, torch.Tensor) and stage.dim() > 0
    if not per_sample and (int(stage) == 0 or window < 0 or window >= seq_len - 1):
        return F.scaled_dot_product_attention(q, k, v)
    if per_sample and (window < 0 or window >= seq_len - 1 or bool((stage == 0).all())):
        return F.scaled_dot_product_attention(q, k, v)
    backend = resolve_backend(backend, q.device)
    if backend == "flex":
        if per_sample:
            block_mask = _per_sample_block_mask((stage == 0).to(q.device), seq_len, window)
        else:
            block_mask = _block_mask(seq_len, window, q.device)
        return _flex_attention(q, k, v, block_mask)
    mask = band_mask(seq_len, window, q.device)  # [T, T]
    if per_sample:
        mask = mask | (stage == 0).to(q.device)[:, None, None, None]  # [B, 1, T, T]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
