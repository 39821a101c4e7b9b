"""Rescoring MAGNeT's candidates with an external pretrained model (paper §3.3, Eq. 5; not in audiocraft).

After each decoding step samples its tokens, the rescorer reads the whole candidate sequence in one teacher-forced
pass and gives the probability of each sampled token of the stage being decoded. The confidence that ranks spans for
re-masking becomes

    p = w * p_MAGNeT + (1 - w) * p_rescorer,        w = DecodingConfig.rescore_weight (1.0: no rescoring)

This is Eq. 5's convention (w weighs MAGNeT). The paper's Fig. 4 pseudo-code writes the weights the other way round:
its w is our 1 - w.

How the rescorer sees the candidate: an autoregressive model of the same codec (MusicGen for music, AudioGen for
audio) reads the K streams in its delay pattern. The stages below the one being decoded are final, the stage itself
is the candidate, and the stages above are not known yet: they are given as the special token (id V, which is also
MAGNeT's MASK), so the rescorer's prediction of (k, t) sees frames < t of the higher streams as empty. Text: the
rescorer is conditioned on the caption through its own text projection (its own T5 states when its text encoder
differs), without classifier-free guidance: one pass of B rows per step, its plain conditional distribution at
temperature 1. Unconditional rows (no caption) are scored unconditionally. The pass runs under no_grad, once per
decoding step.

Shapes: B batch, K codebooks, T frames, S text tokens, E text width, V codebook size.
"""

from __future__ import annotations

import torch

from magnet_lightning.generation.families import DECODER_FAMILIES, families_where


class ARRescorer:
    """An autoregressive model (models.ar.ARTransformer) as MAGNeT's rescorer for one batch of captions.

    Args:
        model: the rescoring ARTransformer (eval mode); same K and V as the MAGNeT model.
        text_states, text_mask: [B, S, E] / [B, S] caption states for the rescorer's text encoder (zeros / False for
            unconditional rows); None for an unconditional batch of `batch_size` rows.
    """

    def __init__(self, model, text_states: torch.Tensor | None, text_mask: torch.Tensor | None,
                 batch_size: int | None = None):
        self.model = model
        device = next(model.parameters()).device
        if text_states is None:
            text_states = torch.zeros(batch_size or 1, 1, model.cfg.text_dim, device=device)
            text_mask = torch.zeros(text_states.shape[:2], dtype=torch.bool, device=device)
        self.memory = model.prepare_text(text_states.to(device).float(), text_mask.to(device).bool())
        self.calls = 0

    def check_compatible(self, model) -> None:
        """Raise unless the rescorer reads the MAGNeT model's tokens (same K codebooks of V entries)."""
        mine, theirs = self.model.cfg, model.cfg
        if (mine.num_codebooks, mine.codebook_size) != (theirs.num_codebooks, theirs.codebook_size):
            raise ValueError(f"the rescorer has K={mine.num_codebooks}, V={mine.codebook_size} but the MAGNeT model "
                             f"K={theirs.num_codebooks}, V={theirs.codebook_size}: it must use the same codec")
        spec = DECODER_FAMILIES.get(getattr(self.model, "family", ""))
        if spec is None or not spec.partner:
            raise ValueError(f"the rescorer must be a model of a family that serves as one "
                             f"({', '.join(families_where(partner=True))})")

    def load(self, other: ARRescorer) -> None:
        """Copy another batch's text memory into this one's tensors (static buffers of the fast path)."""
        for (k, v), (new_k, new_v) in zip(self.memory.keys_values, other.memory.keys_values):
            k.copy_(new_k)
            v.copy_(new_v)

    def __call__(self, codes: torch.Tensor, stage: int) -> torch.Tensor:
        """codes [B, K, T] (the candidate; ids in [0, V], V where unknown) -> float32 [B, T]: the rescorer's
        probability of codes[:, stage, t] at every frame."""
        self.calls += 1
        logits = self.model.codebook_logits(codes, self.memory, stage).float()  # [B, T, V]
        return torch.softmax(logits, dim=-1).gather(-1, codes[:, stage, :, None])[..., 0]


def rescorer_for(generator, texts, text_states: torch.Tensor | None, text_mask: torch.Tensor | None,
                 text_encoder=None) -> ARRescorer:
    """The rescorer of one batch, from an autoregressive `MagnetGenerator`: it reuses the MAGNeT model's text states
    [B, S, E] when both use the same text encoder (e.g. t5-base for MusicGen and music MAGNeT), and encodes the
    captions with its own otherwise."""
    if not generator.decoder.partner:
        raise ValueError(f"the rescorer must be a model of a family that serves as one "
                         f"({', '.join(families_where(partner=True))})")
    own = generator.text_encoder
    same = own is text_encoder or (own is not None and text_encoder is not None and own.serves(text_encoder.name))
    if text_states is not None and not same:
        if own is None:
            raise ValueError("the rescorer has no text encoder for these captions")
        text_states, text_mask = own(list(texts))
    return ARRescorer(generator.model, text_states, text_mask, batch_size=len(texts))
