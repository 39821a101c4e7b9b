"""The chroma of token shards (tokenized with --chroma) for melody models: read from each sample, cut with the
segment, collated into the batch.

A sample's chroma is its whole track's, float16 [Tc, C] at the chroma rate (sample rate / hop). A segment starting
at codec frame s takes the rows from chroma frame int(s / frame_rate * chroma_rate) on (as the reference's chroma
cache cuts one), int(segment seconds * chroma_rate) + 2 of them, zero-padded; the offset of the segment's start
after the first row, in [0, 1) chroma frames, goes with them, so a per-frame model aligns its frames exactly
(models/melody.py `chroma_at_frames`). Batches then hold "chroma" float32 [B, Lc, C] and "chroma_offset" [B].
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from magnet_lightning.data.shards import CHROMA_MEMBER


@dataclass(frozen=True)
class ChromaSpec:
    """What a melody model reads from the shards: the chroma's bins, and the rates aligning it with the codes."""

    bins: int
    frame_rate: float
    chroma_rate: float

    @property
    def rates(self) -> tuple[float, float]:
        return self.frame_rate, self.chroma_rate


def decode_chroma(sample: dict, chroma_bins: int) -> np.ndarray:
    """A raw sample's chroma -> float32 [Tc, C]; KeyError when absent, ValueError when malformed."""
    data = sample[CHROMA_MEMBER]
    chroma = np.load(io.BytesIO(data), allow_pickle=False)
    if chroma.ndim != 2 or chroma.shape[1] != chroma_bins or chroma.shape[0] == 0 or not np.isfinite(chroma).all():
        raise ValueError(f"chroma {chroma.shape} {chroma.dtype}, expected finite (Tc, {chroma_bins})")
    return chroma.astype(np.float32)


def crop_chroma(chroma: np.ndarray, start: int, seg_frames: int, frame_rate: float,
                chroma_rate: float) -> tuple[np.ndarray, float]:
    """The rows [Lc, C] of the segment starting at codec frame `start`, and its offset (see the module doc)."""
    position = start / frame_rate * chroma_rate
    first = int(position)
    length = int(seg_frames / frame_rate * chroma_rate) + 2
    rows = np.zeros((length, chroma.shape[1]), dtype=np.float32)
    part = chroma[first: first + length]
    rows[: part.shape[0]] = part
    return rows, position - first


def segment_item(codes: np.ndarray, meta: dict, start: int, seg_frames: int, rates: tuple[float, float] | None,
                 text: str) -> tuple:
    """(codes [K, <= Tseg], text, meta) of the segment at `start`; with `rates` (frame rate, chroma rate) and a
    sample's chroma, its rows and offset in the metadata (`take_chroma` moves them into the batch)."""
    track_chroma = meta.get("chroma")
    meta = {k: v for k, v in meta.items() if k != "chroma"}
    if rates is not None and track_chroma is not None:
        meta["chroma_rows"], meta["chroma_offset"] = crop_chroma(track_chroma, start, seg_frames, *rates)
    return codes[:, start: start + seg_frames], text, meta


def take_chroma(batch: dict) -> dict:
    """Move the segments' chroma out of the batch's metadata into "chroma" [B, Lc, C] and "chroma_offset" [B]."""
    if not batch["meta"] or "chroma_rows" not in batch["meta"][0]:
        return batch
    metas = [dict(m) for m in batch["meta"]]
    batch["chroma"] = torch.from_numpy(np.stack([m.pop("chroma_rows") for m in metas]))
    batch["chroma_offset"] = torch.tensor([m.pop("chroma_offset") for m in metas], dtype=torch.float64)
    batch["meta"] = metas
    return batch
