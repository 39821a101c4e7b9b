"""The autoregressive family (MusicGen-style, audiocraft `LMModel` with `transformer_lm.causal: true`): the shared
trunk (models/base.py) run causally over the delay pattern (delay_pattern.py).

- `forward(codes, text_states, text_mask)` takes UN-delayed codes [B, K, T] and returns teacher-forced logits
  [B, K, T, V] aligned with them and their validity mask [B, K, T], as audiocraft's `compute_predictions`: the codes
  are laid out in the delay pattern (T steps: the start token, then the delayed streams), the model runs causally,
  and output t + delay_k is the prediction of code (k, t). Codes whose prediction lies past the T steps
  (t >= T - delay_k) are invalid and hold NaN.
- `forward_sequence(sequence, memory)` runs on a delayed sequence [B, K, S] (causal mask; the uncached path).
- `forward_cached(sequence, memory, cache, positions)` runs n new steps with a static KV cache (the generation path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from magnet_lightning.config import ModelConfig
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.delay_pattern import DelayPattern
from magnet_lightning.models.kv_cache import KVCache
from magnet_lightning.models.layers import TextMemory
from magnet_lightning.models.melody import ChromaInput


class ARPrediction(NamedTuple):
    logits: torch.Tensor
    """[B, K, T, V]: logits[:, k, t] predicts codes[:, k, t] (teacher-forced); NaN where `mask` is False."""
    mask: torch.Tensor
    """bool [B, K, T]: positions whose prediction had the full context (audiocraft's `LMOutput.mask`)."""


def _causal(_layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class ARTransformer(CodebookTransformer):
    """A causal transformer over the K delayed codebook streams, conditioned on text by cross-attention.

    Args:
        cfg: sizes (subcodes_context and attention are MAGNeT's and unused here).
        delays: per-codebook delays of the pattern; default 0, 1, ..., K-1 (MusicGen's).
    """

    family = "musicgen"
    sharded_forwards = (*CodebookTransformer.sharded_forwards, "forward_sequence")

    def __init__(self, cfg: ModelConfig, delays: Sequence[int] | None = None):
        super().__init__(cfg)
        self.pattern = DelayPattern(tuple(range(cfg.num_codebooks)) if delays is None else tuple(delays))
        if self.pattern.num_codebooks != cfg.num_codebooks:
            raise ValueError(f"{len(self.pattern.delays)} delays {self.pattern.delays} for "
                             f"{cfg.num_codebooks} codebooks")

    @property
    def special_token_id(self) -> int:
        """The token of empty pattern positions (row V of every embedding table); never predicted."""
        return self.cfg.codebook_size

    def causal_hidden(self, sequence: torch.Tensor, memory: TextMemory) -> torch.Tensor:
        """Delayed sequence [B, K, S] -> hidden states [B, S, D] of the causal stack (after any prefix)."""
        hidden = self.transformer(self.fused_input(sequence, memory), memory, _causal)
        return self.strip_prefix(hidden, memory)

    def forward_sequence(self, sequence: torch.Tensor, memory: TextMemory) -> torch.Tensor:
        """Delayed sequence [B, K, S] (steps 0 .. S-1) -> logits [B, K, S, V]; output s predicts step s + 1."""
        return self.all_logits(self.causal_hidden(sequence, memory))

    def codebook_logits(self, codes: torch.Tensor, memory: TextMemory, codebook: int) -> torch.Tensor:
        """Teacher-forced logits of stream `codebook` at every frame: codes [B, K, T] (any id in [0, V], V = the
        special token, e.g. for codes not known yet) -> [B, T, V]. The sequence runs T + max_delay steps so that every
        frame of the stream is predicted (what rescoring another model's candidate needs); only that head is computed.
        """
        self.check_codes(codes)
        num_frames, delay = codes.shape[-1], self.pattern.delays[codebook]
        sequence = self.pattern.build(codes, self.special_token_id, length=num_frames + self.pattern.max_delay)
        hidden = self.out_norm(self.causal_hidden(sequence, memory))  # [B, S, D]
        return F.linear(hidden[:, delay:delay + num_frames], self.heads[codebook].to(hidden.dtype))

    def forward_cached(self, sequence: torch.Tensor, memory: TextMemory, cache: KVCache,
                       positions: torch.Tensor) -> torch.Tensor:
        """The steps `positions` (long [n], consecutive) of the delayed sequence, sequence [B, K, n], attending to
        the steps the cache already holds -> logits [B, K, n, V]. The cache rows must match B; with a prefix in
        the memory it must hold it first (`cache_prefix`), step s in slot P + s."""
        slots = positions + memory.prefix_length
        visible = cache.visible(slots)

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return cache.attend(layer, q, k, v, slots, visible)

        x = self.fused_input(sequence, memory, positions, with_prefix=False)
        return self.all_logits(self.transformer(x, memory, attend))

    def cache_prefix(self, memory: TextMemory, cache: KVCache) -> None:
        """Run the memory's prefix (P rows; nothing without one) through the causal stack into cache slots 0 .. P-1,
        as the reference's first streaming step does before the codes."""
        if memory.prefix is None:
            return
        slots = torch.arange(memory.prefix_length, device=memory.prefix.device)
        visible = cache.visible(slots)

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return cache.attend(layer, q, k, v, slots, visible)

        self.transformer(self.prefix_input(memory), memory, attend)

    def forward(self, codes: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor,
                chroma: ChromaInput | None = None) -> ARPrediction:
        """Teacher-forced logits of un-delayed codes.

        Args:
            codes: long [B, K, T] token ids in [0, V).
            text_states: [B, S, E] raw text-encoder states; text_mask: bool [B, S].
            chroma: a melody condition (its fusion's rows), or None.
        Returns:
            ARPrediction(logits [B, K, T, V], mask [B, K, T]).
        """
        self.check_codes(codes)
        sequence = self.pattern.build(codes, self.special_token_id, length=codes.shape[-1])  # [B, K, T]
        logits = self.forward_sequence(sequence, self.prepare_text(text_states, text_mask, chroma))
        aligned, valid = self.pattern.revert_logits(logits)
        return ARPrediction(aligned, valid[None].expand(codes.shape[0], -1, -1))
