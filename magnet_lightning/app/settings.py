"""The app's limits and the checkpoints it loads: plain data, importable before torch (the command line builds them
while checking its arguments)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; over a limit is a message in the page."""

    max_duration: float | None = None
    """Seconds of one generation or edited clip (None: DEFAULT_MAX_SECONDS, or the checkpoint's training segment if
    longer). Past the segment, generation is long-form (windows of the segment, the family's default stride)."""
    max_captions: int = 4
    """Captions of one request (one clip each)."""
    max_batch: int = 8
    """Rows of one batched generation (requests of identical settings merged)."""
    max_text_chars: int = 300
    """Characters of one caption."""
    max_queue: int = 32
    """Requests waiting in the server's queue; more are refused with a message."""
    batch_window: float = 0.05
    """Seconds the idle worker waits for more requests to batch with the first."""


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint to load, with the names it records (to share a text encoder or codec with another)."""

    ckpt: str
    text_encoder: str | None = None
    codec: str | None = None
