"""The melody condition as the model takes it: chroma rows and which rows are present, for either fusion of
`ModelConfig.chroma_fuse` ('prepend': a prefix of chroma frames; 'frames': one chroma row per frame of the codes),
and what one generation needs (its conditional rows, its classifier-free-guidance null rows, per long-form window).

Shapes: B batch, Tc chroma frames, T frames, L rows of a chroma input (Tc for 'prepend', T for 'frames'), C bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChromaInput:
    """Chroma rows of a batch: values [B, L, C]; present bool [B] (False: the null condition, a zero embedding)."""

    values: torch.Tensor
    present: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.dim() != 3 or self.present.shape != self.values.shape[:1]:
            raise ValueError(f"chroma values must be [B, L, C] and present [B]; got {tuple(self.values.shape)} and "
                             f"{tuple(self.present.shape)}")

    @classmethod
    def of(cls, values: torch.Tensor, present: torch.Tensor | None = None) -> ChromaInput:
        """All rows present unless `present` [B] says otherwise."""
        if present is None:
            present = torch.ones(values.shape[0], dtype=torch.bool, device=values.device)
        return cls(values.float(), present.bool().to(values.device))

    @property
    def batch(self) -> int:
        return self.values.shape[0]

    def to(self, device: torch.device | str) -> ChromaInput:
        return ChromaInput(self.values.to(device), self.present.to(device))

    def cat(self, other: ChromaInput) -> ChromaInput:
        """Rows of self, then of other (e.g. [conditional; null] for classifier-free guidance)."""
        return ChromaInput(torch.cat([self.values, other.values.to(self.values)]),
                           torch.cat([self.present, other.present.to(self.present.device)]))

    def rows(self, count: int) -> ChromaInput:
        """The batch repeated to `count` rows (a multiple of B)."""
        if count == self.batch:
            return self
        if count % self.batch:
            raise ValueError(f"{count} rows from a chroma batch of {self.batch}")
        reps = count // self.batch
        return ChromaInput(self.values.repeat(reps, 1, 1), self.present.repeat(reps))

    def frames(self, start: int, stop: int) -> ChromaInput:
        """Rows [start, stop) of every item (a long-form window of 'frames' chroma)."""
        return ChromaInput(self.values[:, start:stop], self.present)

    def dropped(self) -> ChromaInput:
        """The same shape, every row the null condition."""
        return ChromaInput(self.values, torch.zeros_like(self.present))


def frame_indices(num_frames: int, frame_rate: float, chroma_rate: float, num_chroma: int,
                  offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """long [B, T] (or [1, T]): the chroma frame nearest in time to each of T codec frames. Codec frame t is centred
    at (t + 0.5) / frame_rate seconds; chroma frame j at (j - offset) / chroma_rate seconds of the same clock
    (`offset` [B]: where the first chroma row sits, in chroma frames, before the first codec frame; data crops
    start between chroma frames). Clamped to the Tc rows."""
    offset = torch.as_tensor(offset, dtype=torch.float64).reshape(-1, 1)  # [B or 1, 1]
    times = (torch.arange(num_frames, dtype=torch.float64)[None, :] + 0.5) / frame_rate  # [1, T]
    index = torch.floor(times * chroma_rate + offset + 0.5).long()
    return index.clamp(0, max(num_chroma - 1, 0))


def chroma_at_frames(chroma: torch.Tensor, num_frames: int, frame_rate: float, chroma_rate: float,
                     offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Chroma [B, Tc, C] at `chroma_rate` -> [B, T, C], one row per codec frame (`frame_indices`)."""
    index = frame_indices(num_frames, frame_rate, chroma_rate, chroma.shape[1], offset).to(chroma.device)
    index = index.expand(chroma.shape[0], -1)[..., None].expand(-1, -1, chroma.shape[-1])
    return chroma.gather(1, index)


@dataclass(frozen=True)
class ChromaCondition:
    """The melody condition of one generation: the conditional rows, the null rows of classifier-free guidance, and
    for a long-form generation what each window sees.

    per_frame: the rows are aligned with the output's T frames ('frames' fusion); a window of frames [s, s + n) sees
    rows [s, s + n). Otherwise the rows are a prefix; `windows` (one conditional input per window, the reference's
    chroma of the melody from the window's start time on) replaces `cond` in later windows when given.
    """

    cond: ChromaInput
    null: ChromaInput
    per_frame: bool
    windows: tuple[ChromaInput, ...] = ()

    @property
    def batch(self) -> int:
        return self.cond.batch

    def guidance(self) -> ChromaInput:
        """[conditional; null] rows (2B), the classifier-free-guidance batch."""
        return self.cond.cat(self.null)

    def window(self, index: int, start: int, length: int) -> ChromaCondition:
        """What long-form window `index` covering frames [start, start + length) sees."""
        if self.per_frame:
            return ChromaCondition(self.cond.frames(start, start + length), self.null.frames(start, start + length),
                                   True)
        cond = self.windows[index] if index < len(self.windows) else self.cond
        return ChromaCondition(cond, self.null, False)

    def to(self, device: torch.device | str) -> ChromaCondition:
        return ChromaCondition(self.cond.to(device), self.null.to(device), self.per_frame,
                               tuple(w.to(device) for w in self.windows))
