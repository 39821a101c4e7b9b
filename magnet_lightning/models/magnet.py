"""The MAGNeT transformer (audiocraft_checkpoint.md): the shared trunk (models/base.py) with MAGNeT's non-causal,
restricted self-attention (attention.py: stage 0 sees every frame, stages >= 1 a ±subcodes_context window) and a
forward that can compute only the head of the stage being decoded or trained."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from magnet_lightning.models.attention import windowed_attention
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.layers import LayerAttendFn, TextMemory
from magnet_lightning.models.melody import ChromaInput


class MagnetTransformer(CodebookTransformer):
    """MAGNeT's non-causal transformer over K parallel codebook streams, conditioned on text by cross-attention."""

    family = "magnet"
    sharded_forwards = (*CodebookTransformer.sharded_forwards, "forward_with_memory")

    @property
    def mask_token_id(self) -> int:
        return self.cfg.codebook_size

    def attend_fn(self, stage: int | torch.Tensor) -> LayerAttendFn:
        """Self-attention of `stage` (int, or long [B] per sample) in every layer: the restricted window."""
        window, backend = self.cfg.subcodes_context, self.cfg.attention

        def attend(_layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return windowed_attention(q, k, v, stage, window, backend)

        return attend

    def _logits(self, hidden: torch.Tensor, stage, heads: str) -> torch.Tensor:
        if heads == "all":
            return self.all_logits(hidden)  # [B, K, T, V]
        x = self.out_norm(hidden)
        if isinstance(stage, torch.Tensor) and stage.dim() > 0:
            return torch.bmm(x, self.heads[stage].to(x.dtype).transpose(1, 2))  # [B, T, V]
        return F.linear(x, self.heads[int(stage)])  # [B, T, V]

    def forward_with_memory(self, codes: torch.Tensor, memory: TextMemory, stage, heads: str = "stage") -> torch.Tensor:
        """codes [B, K, T] with precomputed text memory -> logits [B, T, V] of `stage` (or [B, K, T, V])."""
        if heads not in ("all", "stage"):
            raise ValueError(f"heads must be 'all' or 'stage', got {heads!r}")
        hidden = self.transformer(self.fused_input(codes, memory), memory, self.attend_fn(stage))
        return self._logits(hidden, stage, heads)

    def forward(
        self,
        codes: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
        stage: int | torch.Tensor,
        heads: str = "all",
        chroma: ChromaInput | None = None,
    ) -> torch.Tensor:
        """Logits of the codebook tokens.

        Args:
            codes: long [B, K, T] with MASK (= V) where unknown.
            text_states: [B, S, E] raw text-encoder states; text_mask: bool [B, S].
            stage: codebook stage being predicted (int, or long [B] per sample); selects the attention window.
            heads: 'all' -> [B, K, T, V]; 'stage' -> [B, T, V] of the stage's head only.
            chroma: a melody condition ('frames' fusion: rows [B, T, C] aligned with the frames), or None.
        """
        self.check_codes(codes)
        return self.forward_with_memory(codes, self.prepare_text(text_states, text_mask, chroma), stage, heads)
