"""The building blocks both families share (audiocraft_checkpoint.md): sinusoidal positions, bias-free multi-head
attention with a fused q/k/v projection, and the pre-norm layer of self-attention, cross-attention to text and a GELU
feed-forward block.

The families differ only in which positions self-attention may see, so a layer takes that as a function: `attend(q, k,
v) -> out` on [B, H, L, Dh] heads (MAGNeT's restricted window, a causal mask, or a KV cache). Parameter names follow
audiocraft's `best_state` (`transformer.layers.N.self_attn.in_proj_weight`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from magnet_lightning.config import ModelConfig

AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""attend(q, k, v) -> out, all [B, H, L, Dh] (keys may be longer than queries): one layer's self-attention rule."""
LayerAttendFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""attend(layer_index, q, k, v) -> out: the rule of every layer (a KV cache keeps one slot per layer)."""


def sinusoidal_positions(positions: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """positions [T] (any integer or float dtype) -> [T, D] encoding laid out [cos | sin],
    phase_j(t) = t / max_period^(j / (D/2 - 1)), in float32."""
    half = dim // 2
    pos = positions.to(torch.float32)[:, None]  # [T, 1]
    freqs = torch.arange(half, device=positions.device, dtype=torch.float32)[None, :]  # [1, D/2]
    phase = pos / (max_period ** (freqs / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with a fused, bias-free q/k/v projection `in_proj_weight` [3D, D] (audiocraft layout)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        # PyTorch's default Linear init, as in the reference (its fused projection is not an nn.Linear).
        bound = 1 / math.sqrt(dim)
        nn.init.uniform_(self.in_proj_weight, -bound, bound)
        self.in_proj_adapter: nn.Module | None = None
        """An optional trainable term of the fused projection (LoRA: magnet_lightning.lora): `adapter(x, start,
        stop)` [B, L, stop - start] is added to rows start:stop of x @ in_proj_weight.T (start, stop multiples of D)."""

    def _in_proj(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """x [B, L, D] -> rows start:stop of the fused projection [B, L, stop - start], plus the adapter's term."""
        out = F.linear(x, self.in_proj_weight[start:stop])
        if self.in_proj_adapter is not None:
            out = out + self.in_proj_adapter(x, start, stop)
        return out

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, H, L, Dh]

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(x.transpose(1, 2).flatten(2))  # [B, L, D]

    def self_attention(self, x: torch.Tensor, attend: AttendFn) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D], positions visible as `attend` allows."""
        q, k, v = self._in_proj(x, 0, 3 * x.shape[-1]).chunk(3, dim=-1)
        return self._merge(attend(self._heads(q), self._heads(k), self._heads(v)))

    def text_keys_values(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, S, D] -> keys, values [B, H, S, Dh]."""
        dim = text.shape[-1]
        k, v = self._in_proj(text, dim, 3 * dim).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def cross_attention(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] attends to all text positions (no key mask: padded states are zero vectors, as the reference)."""
        q = self._in_proj(x, 0, x.shape[-1])
        out = F.scaled_dot_product_attention(self._heads(q), keys.to(q.dtype), values.to(q.dtype))
        return self._merge(out)


class Layer(nn.Module):
    """Pre-norm block: x += SelfAttn(norm1 x); x += CrossAttn(norm_cross x, text); x += FFN(norm2 x).
    Without cross-attention (`cfg.cross_attention` False: the text is prepended to the input) the middle step and its
    parameters do not exist, as in audiocraft's layers built with `cross_attention=False`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg.dim, cfg.num_heads)
        self.norm_cross = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps) if cfg.cross_attention else None
        self.cross_attention = Attention(cfg.dim, cfg.num_heads) if cfg.cross_attention else None
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.linear1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.linear2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, text_kv: tuple[torch.Tensor, torch.Tensor] | torch.Tensor | None,
                attend: AttendFn) -> torch.Tensor:
        """x [B, T, D]; text_kv: this layer's text keys and values [B, H, S, Dh], or the projected text [B, S, D]
        (they are computed here then); None for a layer without cross-attention."""
        x = x + self.self_attn.self_attention(self.norm1(x), attend)
        if self.cross_attention is not None:
            if isinstance(text_kv, torch.Tensor):
                text_kv = self.cross_attention.text_keys_values(text_kv)
            x = x + self.cross_attention.cross_attention(self.norm_cross(x), *text_kv)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


@dataclass
class TextMemory:
    """The conditions of a batch, prepared once per generation: cross-attention keys/values of every layer, and what
    is fused into the input (audiocraft's `ConditionFuser`): rows prepended to it, rows added to each frame."""

    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, keys and values [B, H, S, Dh] (empty without cross-attention)."""
    text: torch.Tensor | None = None
    """Instead of `keys_values`: the projected text [B, S, D], each layer computing its keys and values in its own
    forward (sharded training, where a layer's weights exist only during its forward and backward)."""
    prefix: torch.Tensor | None = None
    """[B, P, D] rows in front of the input (a melody's chroma, then the text, for 'prepend' fusions); the model's
    outputs on them are dropped."""
    frame_inputs: torch.Tensor | None = None
    """[B, L, D] added to the input at each position (the 'frames' chroma: position t gets row min(t, L - 1))."""

    @property
    def prefix_length(self) -> int:
        return 0 if self.prefix is None else self.prefix.shape[1]

    def for_layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor | None:
        if self.text is not None:
            return self.text
        return self.keys_values[index] if self.keys_values else None


class Transformer(nn.Module):
    """The stack of layers: x [B, T, D] -> [B, T, D] given the text memory and every layer's attention rule.

    `activation_checkpointing` (a run-time switch, not part of the weights): with gradients on, each Layer keeps only
    its input and recomputes its activations in the backward pass (`torch.utils.checkpoint`, non-reentrant, the RNG
    state preserved), trading about one more forward per step for the activation memory of all layers.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        self.activation_checkpointing = False
        self.layerwise_text = False  # True under FSDP2 (training/fsdp.py): TextMemory holds the text, not K/V

    def forward(self, x: torch.Tensor, memory: TextMemory, attend: LayerAttendFn) -> torch.Tensor:
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for index, layer in enumerate(self.layers):
            kv = memory.for_layer(index)
            if recompute:
                x = checkpoint(layer, x, kv, partial(attend, index), use_reentrant=False)
            else:
                x = layer(x, kv, partial(attend, index))
        return x
