"""The files of a result: one WAV (32-bit float, loudness-normalised like `magnet-generate`'s) and one tokens file
(`.npy`, int16 [K, T]) per clip, and a spectrogram picture of all the clips of a request, one under the other.

Shapes: B batch, K codebooks, T frames, C channels, N samples.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from magnet_lightning.app.engine import Request, Result
from magnet_lightning.callbacks.spectrogram import spectrogram_figure
from magnet_lightning.utils.audio import write_wav

LUFS = -14.0
KEEP_SECONDS = 3600.0
"""A request's files are deleted this long after they were written (the page has served them by then)."""


@dataclass
class Written:
    wavs: list[str]
    tokens: list[str]
    spectrogram: np.ndarray
    """uint8 RGB [H, W, 3]: the clips' spectrograms stacked."""

    @property
    def downloads(self) -> list[str]:
        return [path for pair in zip(self.wavs, self.tokens) for path in pair]


def _slug(text: str | None, limit: int = 32) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text or "").strip("_")[:limit] or "unconditional"


def write_result(root: Path, request: Request, result: Result, tag: str = "") -> Written:
    """Write the clips of `result` into a new folder under `root`; returns their paths and the picture. Folders
    older than KEEP_SECONDS are deleted first, so a long-running app does not fill its disk."""
    prune(root)
    folder = root / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True)
    wavs, tokens, pictures = [], [], []
    for index, (text, codes, wav) in enumerate(zip(request.texts, result.tokens, result.audio)):
        stem = f"{tag}{index}_{_slug(text)}_seed{result.seed}"
        write_wav(folder / f"{stem}.wav", wav, result.sample_rate, LUFS)
        np.save(folder / f"{stem}.tokens.npy", codes.numpy().astype(np.int16))
        wavs.append(str(folder / f"{stem}.wav"))
        tokens.append(str(folder / f"{stem}.tokens.npy"))
        title = f"{tag}{text or '(no caption)'}"[:80]
        pictures.append(spectrogram_figure(wav, result.sample_rate, title=title))
    return Written(wavs, tokens, np.concatenate(pictures, axis=0))


def prune(root: Path, keep_seconds: float = KEEP_SECONDS) -> None:
    """Delete the request folders under `root` last written more than `keep_seconds` ago."""
    limit = time.time() - keep_seconds
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            if folder.is_dir() and folder.stat().st_mtime < limit:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # pruned by another handler thread meanwhile
            continue


def details(request: Request, result: Result, family: str) -> dict:
    """What the page shows beside the audio (and the API returns): settings, seed and latency."""
    return {
        "checkpoint": request.ckpt, "family": family, "captions": list(request.texts), "seed": result.seed,
        "seconds": round(result.audio.shape[-1] / result.sample_rate, 3), "frames": int(result.tokens.shape[-1]),
        "latency_s": round(result.latency, 3), "queue_wait_s": round(result.wait, 3),
        "batch_rows": result.batch_rows, "partner": request.partner, "pairing": request.partner_mode,
        "infill": list(request.infill) if request.infill else None, "melody": request.melody is not None,
        "channels": int(result.audio.shape[1]),
        "changed_options": dict(request.options), "decoding": _plain(result.decoding),
    }


def _plain(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
