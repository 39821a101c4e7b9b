"""The delay pattern of the autoregressive family: the one place where codes and the model's sequence are mapped to
each other (facts: audiocraft `DelayedPatternProvider`, MusicGen §2.2).

Stream k of the codes [B, K, T] is shifted right by 1 + delay_k steps in the sequence [B, K, S] the transformer runs
on: sequence[:, k, s] = codes[:, k, s - 1 - delay_k]. Step 0 holds no code (the start token), and every position
outside the codes holds the *special token* (id V, the extra row of each embedding table). With delays (0, 1, ..., K-1)
and K = 3, T = 4:

    codes              sequence (S = T + max_delay + 1 = 7; '.' = special token)
    a0 a1 a2 a3        .  a0 a1 a2 a3 .  .
    b0 b1 b2 b3   ->   .  .  b0 b1 b2 b3 .
    c0 c1 c2 c3        .  .  .  c0 c1 c2 c3

A causal model's output at step s predicts step s + 1, so the logits of code (k, t) come from output t + delay_k; a
model run on S steps predicts the codes with t + delay_k < S only (the validity mask).

Shapes: B batch, K codebooks, T frames, S sequence steps, V codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DelayPattern:
    """Per-codebook delays (audiocraft's `codebooks_pattern.delay.delays`, sorted, usually 0, 1, ..., K-1)."""

    delays: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "delays", tuple(int(d) for d in self.delays))
        if not self.delays or min(self.delays) < 0 or list(self.delays) != sorted(self.delays):
            raise ValueError(f"delays must be non-negative and non-decreasing, one per codebook; got {self.delays}")

    @property
    def num_codebooks(self) -> int:
        return len(self.delays)

    @property
    def max_delay(self) -> int:
        return self.delays[-1]

    def sequence_length(self, num_frames: int) -> int:
        """S holding every code of T frames: T + max_delay + 1."""
        return num_frames + self.max_delay + 1

    def first_step(self, frame: int) -> int:
        """The first sequence step that holds a code of `frame` (of the least delayed stream)."""
        return frame + 1 + self.delays[0]

    def _offsets(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.delays, device=device)[:, None] + 1  # [K, 1]

    def valid(self, num_frames: int, length: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """bool [K, S]: True where the sequence holds a code (False: the special token). S defaults to the full
        sequence_length(T)."""
        length = self.sequence_length(num_frames) if length is None else length
        frame = torch.arange(length, device=device)[None, :] - self._offsets(device)  # [K, S]
        return (frame >= 0) & (frame < num_frames)

    def build(self, codes: torch.Tensor, special: int, length: int | None = None) -> torch.Tensor:
        """codes [B, K, T] -> sequence [B, K, S] with `special` where no code is (S: default T + max_delay + 1;
        a shorter S keeps the first S steps). Codes may hold any id (e.g. -1 for not yet generated)."""
        self._check(codes)
        num_frames = codes.shape[-1]
        length = self.sequence_length(num_frames) if length is None else length
        frame = torch.arange(length, device=codes.device)[None, :] - self._offsets(codes.device)  # [K, S]
        index = frame.clamp(0, max(num_frames - 1, 0)).expand(codes.shape[0], -1, -1)  # [B, K, S]
        gathered = codes.gather(-1, index) if num_frames else torch.zeros_like(index)
        return torch.where(self.valid(num_frames, length, codes.device), gathered, special)

    def revert(self, sequence: torch.Tensor, num_frames: int) -> torch.Tensor:
        """sequence [B, K, S] -> codes [B, K, T] (codes[:, k, t] = sequence[:, k, t + 1 + delay_k]); S must hold
        them all (S >= T + max_delay + 1)."""
        self._check(sequence)
        if sequence.shape[-1] < self.sequence_length(num_frames):
            raise ValueError(f"a sequence of {sequence.shape[-1]} steps does not hold {num_frames} frames with delays "
                             f"{self.delays} (needs {self.sequence_length(num_frames)})")
        step = torch.arange(num_frames, device=sequence.device)[None, :] + self._offsets(sequence.device)  # [K, T]
        return sequence.gather(-1, step.expand(sequence.shape[0], -1, -1))

    def revert_logits(self, logits: torch.Tensor, fill: float = float("nan")) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs of a causal model on the first S steps [B, K, S, V] -> (logits [B, K, T, V] of the codes of T = S
        frames, validity bool [K, T]); invalid positions (t + delay_k >= S) hold `fill` (NaN, as the reference)."""
        self._check(logits)
        num_frames = logits.shape[2]
        output = torch.arange(num_frames, device=logits.device)[None, :] + self._offsets(logits.device) - 1  # [K, T]
        valid = output < num_frames
        rows = torch.arange(self.num_codebooks, device=logits.device)[:, None]
        aligned = logits[:, rows, output.clamp(max=num_frames - 1)]  # [B, K, T, V]
        return aligned.masked_fill_(~valid[None, :, :, None], fill), valid  # aligned is a fresh tensor

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 3 or x.shape[1] != self.num_codebooks:
            raise ValueError(f"expected [B, {self.num_codebooks}, ...] for delays {self.delays}, got {tuple(x.shape)}")
