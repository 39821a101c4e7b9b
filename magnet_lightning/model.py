"""The MAGNeT transformer (audiocraft_checkpoint.md): summed codebook embeddings, sinusoidal positions, pre-norm layers
of restricted self-attention, cross-attention to projected text and a GELU FFN, no biases, final norm, K heads.

Parameter names follow audiocraft's `best_state` wherever the layout is the same, so conversion is a rename of the
embedding tables and output heads only (see convert.py). The K embedding tables and the K heads are each one
parameter ([K, V+1, D] and [K, V, D]): one gather instead of K, and computing only the head of the trained stage keeps
every parameter in the graph, so DDP needs no `find_unused_parameters`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from magnet_lightning.attention import windowed_attention
from magnet_lightning.config import ModelConfig


def sinusoidal_positions(seq_len: int, dim: int, max_period: float, device: torch.device) -> torch.Tensor:
    """[T, D] positional encoding laid out [cos | sin], phase_j(t) = t / max_period^(j / (D/2 - 1))."""
    half = dim // 2
    pos = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None]  # [T, 1]
    freqs = torch.arange(half, device=device, dtype=torch.float32)[None, :]  # [1, D/2]
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

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, H, L, Dh]

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(x.transpose(1, 2).flatten(2))  # [B, L, D]

    def self_attention(self, x: torch.Tensor, stage, window: int, backend: str) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D] with the stage's window."""
        q, k, v = F.linear(x, self.in_proj_weight).chunk(3, dim=-1)
        out = windowed_attention(self._heads(q), self._heads(k), self._heads(v), stage, window, backend)
        return self._merge(out)

    def text_keys_values(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, S, D] -> keys, values [B, H, S, Dh]."""
        dim = text.shape[-1]
        k, v = F.linear(text, self.in_proj_weight[dim:]).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def cross_attention(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] attends to all text positions (no key mask: padded states are zero vectors, as the reference)."""
        q = F.linear(x, self.in_proj_weight[: x.shape[-1]])
        out = F.scaled_dot_product_attention(self._heads(q), keys.to(q.dtype), values.to(q.dtype))
        return self._merge(out)


class Layer(nn.Module):
    """Pre-norm block: x += SelfAttn(norm1 x); x += CrossAttn(norm_cross x, text); x += FFN(norm2 x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.self_attn = Attention(cfg.dim, cfg.num_heads)
        self.norm_cross = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.cross_attention = Attention(cfg.dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.linear1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.linear2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.window = cfg.subcodes_context
        self.backend = cfg.attention

    def forward(self, x: torch.Tensor, text_kv: tuple[torch.Tensor, torch.Tensor], stage) -> torch.Tensor:
        x = x + self.self_attn.self_attention(self.norm1(x), stage, self.window, self.backend)
        x = x + self.cross_attention.cross_attention(self.norm_cross(x), *text_kv)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


@dataclass
class TextMemory:
    """Text conditioning prepared once per generation: cross-attention keys/values of every layer."""

    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, keys and values [B, H, S, Dh]."""


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))


class MagnetTransformer(nn.Module):
    """MAGNeT's non-causal transformer over K parallel codebook streams, conditioned on text by cross-attention."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        k, v, d = cfg.num_codebooks, cfg.codebook_size, cfg.dim
        self.emb = nn.Parameter(torch.empty(k, v + 1, d))  # row V of each table is MASK
        self.text_proj = nn.Linear(cfg.text_dim, d)
        self.transformer = Transformer(cfg)
        self.out_norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.heads = nn.Parameter(torch.empty(k, v, d))
        self.register_buffer("_code_offsets", torch.arange(k)[:, None] * (v + 1), persistent=False)  # [K, 1]
        self.reset_parameters()

    @property
    def mask_token_id(self) -> int:
        return self.cfg.codebook_size

    def reset_parameters(self) -> None:
        """The reference's init: truncated normal (±3σ), σ = 1/sqrt(fan_in), scaled by 1/sqrt(2 l) in layer l."""
        std = 1 / math.sqrt(self.cfg.dim)
        nn.init.trunc_normal_(self.emb, std=std, a=-3 * std, b=3 * std)
        nn.init.trunc_normal_(self.heads, std=std, a=-3 * std, b=3 * std)
        for index, layer in enumerate(self.transformer.layers, start=1):
            for linear in (layer.self_attn.out_proj, layer.cross_attention.out_proj, layer.linear1, layer.linear2):
                s = 1 / math.sqrt(linear.in_features) / math.sqrt(2 * index)
                nn.init.trunc_normal_(linear.weight, std=s, a=-3 * s, b=3 * s)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] -> summed embeddings + positions [B, T, D]."""
        flat_table = self.emb.flatten(0, 1)  # [K * (V + 1), D]
        x = F.embedding(codes + self._code_offsets, flat_table).sum(dim=1)  # [B, T, D]
        pos = sinusoidal_positions(codes.shape[-1], self.cfg.dim, self.cfg.max_period, codes.device)
        return x + pos.to(x.dtype)

    def prepare_text(self, text_states: torch.Tensor, text_mask: torch.Tensor) -> TextMemory:
        """Project text states [B, S, E] (zeroed where text_mask [B, S] is False) and compute every layer's K/V."""
        text = self.text_proj(text_states) * text_mask[..., None].to(text_states.dtype)  # [B, S, D]
        return TextMemory([layer.cross_attention.text_keys_values(text) for layer in self.transformer.layers])

    def _logits(self, x: torch.Tensor, stage, heads: str) -> torch.Tensor:
        x = self.out_norm(x)
        if heads == "all":
            return torch.einsum("btd,kvd->bktv", x, self.heads.to(x.dtype))  # [B, K, T, V]
        if isinstance(stage, torch.Tensor) and stage.dim() > 0:
            return torch.bmm(x, self.heads[stage].to(x.dtype).transpose(1, 2))  # [B, T, V]
        return F.linear(x, self.heads[int(stage)])  # [B, T, V]

    def forward_with_memory(self, codes: torch.Tensor, memory: TextMemory, stage, heads: str = "stage") -> torch.Tensor:
        """codes [B, K, T] with precomputed text memory -> logits [B, T, V] of `stage` (or [B, K, T, V])."""
        if heads not in ("all", "stage"):
            raise ValueError(f"heads must be 'all' or 'stage', got {heads!r}")
        x = self.embed(codes)
        for layer, kv in zip(self.transformer.layers, memory.keys_values):
            x = layer(x, kv, stage)
        return self._logits(x, stage, heads)

    def forward(
        self,
        codes: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
        stage: int | torch.Tensor,
        heads: str = "all",
    ) -> torch.Tensor:
        """Logits of the codebook tokens.

        Args:
            codes: long [B, K, T] with MASK (= V) where unknown.
            text_states: [B, S, E] raw text-encoder states; text_mask: bool [B, S].
            stage: codebook stage being predicted (int, or long [B] per sample); selects the attention window.
            heads: 'all' -> [B, K, T, V]; 'stage' -> [B, T, V] of the stage's head only.
        """
        self._check_codes(codes)
        return self.forward_with_memory(codes, self.prepare_text(text_states, text_mask), stage, heads)

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3 or codes.shape[1] != self.cfg.num_codebooks:
            raise ValueError(f"codes must be [B, {self.cfg.num_codebooks}, T], got {tuple(codes.shape)}")
        if codes.dtype not in (torch.long, torch.int):
            raise TypeError(f"codes must be integer token ids, got {codes.dtype}")
