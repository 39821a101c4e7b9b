"""What both families' models are made of: K summed codebook embeddings, sinusoidal positions, the layer stack with
cross-attention to projected text, a final norm and K output heads (audiocraft's `LMModel` layout, no biases).

Conditions reach the trunk as audiocraft's fuser says (`ModelConfig.text_fuse`, `.chroma_fuse`): the text by
cross-attention or prepended; a melody's chroma (`chroma_proj`, present when `chroma_bins` > 0) prepended in front
of the text, or added to each frame's input. `prepare_text` builds the TextMemory of a batch once, and every family's
forward builds its input with `fused_input` and drops the prefix's outputs with `strip_prefix`.

The K embedding tables and the K heads are each one parameter ([K, V+1, D] and [K, V, D]): one gather instead of K,
and computing only some heads keeps every parameter in the graph, so DDP needs no `find_unused_parameters`. Row V of
each table is the extra token: MAGNeT's MASK, the autoregressive family's special token for empty pattern positions.
Conversion from audiocraft is a rename of the tables, the heads and the text projection only (see convert.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from magnet_lightning.config import ModelConfig
from magnet_lightning.models.layers import TextMemory, Transformer, sinusoidal_positions
from magnet_lightning.models.melody import ChromaInput


class CodebookTransformer(nn.Module):
    """The shared trunk; subclasses define which positions self-attention sees and what forward returns."""

    family: str = ""
    """The family this model class is (models/registry.py), the string its checkpoints store."""
    sharded_forwards: tuple[str, ...] = ("prepare_text",)
    """Methods besides `forward` that the objectives and decoders call and that use the root's own weights
    (embeddings, text projection, heads): FSDP2 gathers those weights around these calls too (training/fsdp.py).
    A family adds its own entry points here."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        k, v, d = cfg.num_codebooks, cfg.codebook_size, cfg.dim
        self.emb = nn.Parameter(torch.empty(k, v + 1, d))  # row V of each table is the extra token
        self.text_proj = nn.Linear(cfg.text_dim, d)
        self.chroma_proj = nn.Linear(cfg.chroma_bins, d) if cfg.chroma_bins else None
        self.transformer = Transformer(cfg)
        self.out_norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.heads = nn.Parameter(torch.empty(k, v, d))
        self.register_buffer("_code_offsets", torch.arange(k)[:, None] * (v + 1), persistent=False)  # [K, 1]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's init: truncated normal (±3σ), σ = 1/sqrt(fan_in), scaled by 1/sqrt(2 l) in layer l."""
        std = 1 / math.sqrt(self.cfg.dim)
        nn.init.trunc_normal_(self.emb, std=std, a=-3 * std, b=3 * std)
        nn.init.trunc_normal_(self.heads, std=std, a=-3 * std, b=3 * std)
        for index, layer in enumerate(self.transformer.layers, start=1):
            cross = [] if layer.cross_attention is None else [layer.cross_attention.out_proj]
            for linear in (layer.self_attn.out_proj, *cross, layer.linear1, layer.linear2):
                s = 1 / math.sqrt(linear.in_features) / math.sqrt(2 * index)
                nn.init.trunc_normal_(linear.weight, std=s, a=-3 * s, b=3 * s)

    def embed(self, codes: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, K, T] -> summed embeddings + positions [B, T, D]; positions long [T] (default 0 .. T-1)."""
        flat_table = self.emb.flatten(0, 1)  # [K * (V + 1), D]
        x = F.embedding(codes + self._code_offsets, flat_table).sum(dim=1)  # [B, T, D]
        if positions is None:
            positions = torch.arange(codes.shape[-1], device=codes.device)
        return x + sinusoidal_positions(positions, self.cfg.dim, self.cfg.max_period).to(x.dtype)

    def fused_input(self, codes: torch.Tensor, memory: TextMemory, positions: torch.Tensor | None = None,
                    with_prefix: bool = True) -> torch.Tensor:
        """The transformer's input for codes [B, K, T] at `positions` (long [T], default 0 .. T-1): their embeddings
        at positions shifted past the memory's prefix, plus its per-frame rows; with `with_prefix` the prefix (at
        positions 0 .. P-1) in front -> [B, P + T, D] (else [B, T, D]: the prefix is already in a KV cache)."""
        if positions is None:
            positions = torch.arange(codes.shape[-1], device=codes.device)
        x = self.embed(codes, positions + memory.prefix_length)
        if memory.frame_inputs is not None:
            rows = positions.clamp(max=memory.frame_inputs.shape[1] - 1)
            x = x + memory.frame_inputs.index_select(1, rows).to(x.dtype)
        if with_prefix and memory.prefix is not None:
            x = torch.cat([self.prefix_input(memory).to(x.dtype), x], dim=1)
        return x

    def prefix_input(self, memory: TextMemory) -> torch.Tensor:
        """The prefix rows with their positions 0 .. P-1 [B, P, D] (audiocraft adds positions after fusing)."""
        positions = torch.arange(memory.prefix_length, device=memory.prefix.device)
        return memory.prefix + sinusoidal_positions(positions, self.cfg.dim, self.cfg.max_period).to(memory.prefix)

    @staticmethod
    def strip_prefix(hidden: torch.Tensor, memory: TextMemory) -> torch.Tensor:
        """hidden [B, P + T, D] -> [B, T, D]: the outputs of the codes only."""
        return hidden[:, memory.prefix_length:] if memory.prefix is not None else hidden

    def prepare_text(self, text_states: torch.Tensor, text_mask: torch.Tensor,
                     chroma: ChromaInput | None = None) -> TextMemory:
        """The conditions of a batch: text states [B, S, E] (zeroed where text_mask [B, S] is False) projected, as
        every layer's cross-attention K/V or as prefix rows, and a melody's chroma (ChromaInput, rows [B, L, C]; the
        null rows a zero embedding) projected, as prefix rows in front of the text or as per-frame input rows.
        (With `transformer.layerwise_text`, under FSDP2, each layer computes its K/V in its forward.)"""
        text = self.text_proj(text_states) * text_mask[..., None].to(text_states.dtype)  # [B, S, D]
        prefix, frames = [], None
        if chroma is not None:
            rows = self.project_chroma(chroma, text.shape[0])
            if self.cfg.chroma_fuse == "frames":
                frames = rows
            else:
                prefix.append(rows)
        if not self.cfg.cross_attention:
            return TextMemory([], prefix=torch.cat(prefix + [text], dim=1), frame_inputs=frames)
        joined = torch.cat(prefix, dim=1) if prefix else None
        if self.transformer.layerwise_text:
            return TextMemory([], text, prefix=joined, frame_inputs=frames)
        keys_values = [layer.cross_attention.text_keys_values(text) for layer in self.transformer.layers]
        return TextMemory(keys_values, prefix=joined, frame_inputs=frames)

    def project_chroma(self, chroma: ChromaInput, batch: int) -> torch.Tensor:
        """chroma rows [B, L, C] -> [B, L, D], zero on the null rows (`present` False)."""
        if self.chroma_proj is None:
            raise ValueError("this model has no melody conditioning (chroma_bins=0): it takes no chroma")
        if chroma.batch != batch or chroma.values.shape[-1] != self.cfg.chroma_bins:
            raise ValueError(f"chroma must be [{batch}, L, {self.cfg.chroma_bins}], got {tuple(chroma.values.shape)}")
        weight = self.chroma_proj.weight
        rows = self.chroma_proj(chroma.values.to(device=weight.device, dtype=weight.dtype))
        return rows * chroma.present.to(rows.device)[:, None, None].to(rows.dtype)

    def all_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and every head: hidden [B, T, D] -> logits [B, K, T, V]."""
        x = self.out_norm(hidden)
        return torch.einsum("btd,kvd->bktv", x, self.heads.to(x.dtype))

    def check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3 or codes.shape[1] != self.cfg.num_codebooks:
            raise ValueError(f"codes must be [B, {self.cfg.num_codebooks}, T], got {tuple(codes.shape)}")
        if codes.dtype not in (torch.long, torch.int):
            raise TypeError(f"codes must be integer token ids, got {codes.dtype}")
