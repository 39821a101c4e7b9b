"""Evaluation sets: (id, caption, reference) items from a caption file and a reference audio folder, or from token
shards (captions in the json, reference = the shard's codes decoded by the codec).

- Caption file: a CSV with an id column (``id``, ``ytid``, ``audiocap_id``, ``youtube_id`` or ``name``) and a
  caption column (``caption`` or ``text``) — MusicCaps / AudioCaps style —, or a .txt / .jsonl prompt file (see
  `magnet_lightning.generation.generator.read_prompts`).
- Reference folder: ``<id>.wav`` (or .flac / .ogg / .mp3) for each id, read with soundfile.

A missing or unreadable reference file raises (``on_bad="error"``, default) or is skipped, counted and logged
(``on_bad="skip"``): data is never dropped silently. Shapes: C channels, L samples, K codebooks, T frames.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from magnet_lightning.data.pipeline import SkipCounter, caption_of, iter_shard
from magnet_lightning.data.prompts import read_prompts
from magnet_lightning.data.shards import resolve_shards

logger = logging.getLogger(__name__)

ID_COLUMNS = ("id", "ytid", "audiocap_id", "youtube_id", "name", "key")
CAPTION_COLUMNS = ("caption", "text")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class EvalItem:
    """One prompt and its reference: a file to read (``path``) or tokens to decode (``codes`` [K, T])."""

    key: str
    text: str
    path: Path | None = None
    codes: Tensor | None = None
    meta: dict = field(default_factory=dict)


def read_captions(path: str | Path) -> list[tuple[str, str]]:
    """(id, caption) pairs of a CSV / .txt / .jsonl caption file; a record without id or caption is an error."""
    path = Path(path)
    if path.suffix.lower() != ".csv":

        return read_prompts(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file {path} not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        id_col = next((c for c in ID_COLUMNS if c in columns), None)
        cap_col = next((c for c in CAPTION_COLUMNS if c in columns), None)
        if id_col is None or cap_col is None:
            raise ValueError(f"{path}: needs an id column (one of {ID_COLUMNS}) and a caption column (one of "
                             f"{CAPTION_COLUMNS}); found {columns}")
        pairs = []
        for number, row in enumerate(reader, 2):
            key, text = (row.get(id_col) or "").strip(), (row.get(cap_col) or "").strip()
            if not key or not text:
                raise ValueError(f"{path}:{number}: empty {id_col!r} or {cap_col!r}: {row}")
            pairs.append((key, text))
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: duplicate ids, e.g. {sorted(k for k in set(keys) if keys.count(k) > 1)[:3]}")
    return pairs


def find_reference(folder: Path, key: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{key}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def items_from_files(captions: str | Path, reference: str | Path | None,
                     on_bad: Literal["error", "skip"] = "error") -> tuple[list[EvalItem], int]:
    """Items of a caption file, each with its reference file (``reference`` folder) -> (items, skipped)."""
    pairs = read_captions(captions)
    if reference is None:
        return [EvalItem(key, text) for key, text in pairs], 0
    folder = Path(reference)
    if not folder.is_dir():
        raise FileNotFoundError(f"reference folder {folder} not found")
    items, missing = [], []
    for key, text in pairs:
        path = find_reference(folder, key)
        if path is None:
            missing.append(key)
        else:
            items.append(EvalItem(key, text, path=path))
    if missing:
        message = (f"{len(missing)} of {len(pairs)} ids have no reference audio ({'/'.join(AUDIO_SUFFIXES)}) in "
                   f"{folder}, e.g. {missing[:5]}")
        if on_bad == "error":
            raise FileNotFoundError(message + " (pass on_bad='skip' / --skip-bad to skip them)")
        logger.warning("Skipping: %s", message)
    return items, len(missing)


def items_from_shards(spec: str, num_codebooks: int, codebook_size: int) -> tuple[list[EvalItem], int]:
    """Items of token shards (a folder, manifest or tar spec): caption from the json, reference codes [K, T].
    Bad samples are skipped, counted and logged by the shard reader; samples without a caption are skipped too."""

    counter = SkipCounter()
    items, no_caption = [], 0
    for url in resolve_shards(spec).urls:
        for codes, meta in iter_shard(url, counter, num_codebooks, codebook_size):
            text = caption_of(meta)
            if not text:
                no_caption += 1
                logger.warning("Skipping %s: no caption (%d so far)", meta.get("key"), no_caption)
                continue
            items.append(EvalItem(str(meta.get("key")), text, codes=torch.from_numpy(codes.astype("int64")),
                                  meta=meta))
    return items, no_caption + sum(counter.totals().values())
