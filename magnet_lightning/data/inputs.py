"""The audio collection to tokenize: a folder of audio files with sidecar captions (``song.wav`` + ``song.json`` or
``song.txt``), or a JSONL/CSV manifest with a ``path`` column, a caption (``caption``/``description``/``text``) and
optional metadata. Files without a caption are kept (logged and counted) with an empty caption."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from magnet_lightning.data.shards import CAPTION_FIELDS, caption_of
from magnet_lightning.errors import UserError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
NOT_AUDIO_EXTENSIONS = (".json", ".txt", ".jsonl", ".csv", ".tar")  # sidecars, lists and our own shards


@dataclass
class AudioItem:
    """One input track: a unique dot-free `key`, its audio `path`, caption and metadata."""

    key: str
    path: str
    caption: str = ""
    metadata: dict = field(default_factory=dict)


def make_key(relative_path: str) -> str:
    """A WebDataset-safe key from a relative path: no extension, no dots; '/' -> '__', other odd chars -> '_'."""
    stem = os.path.splitext(relative_path)[0].replace(os.sep, "__").replace("/", "__")
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "item"


def _split_caption(record: dict) -> tuple[str, dict]:
    caption = caption_of(record)
    metadata = {k: v for k, v in record.items() if k not in CAPTION_FIELDS and k != "path" and v not in (None, "")}
    return caption, metadata


def _read_json_object(path: Path, text: str, where: str) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); fix or remove it") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _sidecar(audio: Path) -> tuple[str, dict]:
    meta_path, txt_path = audio.with_suffix(".json"), audio.with_suffix(".txt")
    if meta_path.is_file():
        return _split_caption(_read_json_object(meta_path, meta_path.read_text(), str(meta_path)))
    if txt_path.is_file():
        return txt_path.read_text().strip(), {}
    return "", {}


def _records(manifest: Path) -> list[tuple[int, dict]]:
    """(line number, record) of a .jsonl (one object a line) or .csv (header on line 1) manifest."""
    if manifest.suffix == ".csv":
        with open(manifest, newline="") as f:
            return [(number, row) for number, row in enumerate(csv.DictReader(f), 2)]
    return [(number, _read_json_object(manifest, line, f"{manifest}:{number}"))
            for number, line in enumerate(manifest.read_text().splitlines(), 1) if line.strip()]


def _folder_files(source: Path) -> list[Path]:
    """Candidate audio files of a folder: known audio extensions first (sorted), then other files (sorted; tried
    with the audio reader, counted as 'unsupported' when it cannot read them). Sidecars, shards (an output folder
    inside the input) and hidden files are not candidates."""
    known, other, hidden = [], [], 0
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        if any(part.startswith(".") for part in path.relative_to(source).parts):
            hidden += 1
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            known.append(path)
        elif path.suffix.lower() not in NOT_AUDIO_EXTENSIONS and ".tar.tmp" not in path.name:
            other.append(path)
    if hidden:
        log.info("%s: ignored %d hidden files", source, hidden)
    if other:
        log.warning("%s: %d files with other extensions (e.g. %s) will be tried with the audio reader", source,
                    len(other), other[0].name)
    return known + other


def scan_inputs(source: str | Path) -> list[AudioItem]:
    """List the tracks of a folder (recursive, sorted) or of a .jsonl/.csv manifest, with unique keys.

    Raises UserError for a missing input, a bad JSON sidecar or manifest line (with its line number) or a record
    without a path. Tracks without a caption are counted and logged (CAPTION_FIELDS are the fields read).
    """
    source = Path(source)
    items = []
    if source.is_dir():
        for path in _folder_files(source):
            caption, metadata = _sidecar(path)
            items.append(AudioItem(make_key(str(path.relative_to(source))), str(path), caption, metadata))
    elif source.is_file() and source.suffix in (".jsonl", ".csv"):
        for number, record in _records(source):
            if not record.get("path"):
                raise UserError(f"{source}:{number}: record without a 'path': {record}")
            path = Path(record["path"])
            path = path if path.is_absolute() else source.parent / path
            caption, metadata = _split_caption(record)
            items.append(AudioItem(make_key(str(record["path"]).lstrip("./")), str(path), caption, metadata))
    elif not source.exists():
        raise UserError(f"input {source} does not exist: give an audio folder or a .jsonl/.csv manifest")
    else:
        raise UserError(f"input {source} is neither a folder nor a .jsonl/.csv manifest")
    seen: Counter = Counter()
    for item in items:  # two files may map to the same key (a.wav and a.flac): number the later ones
        seen[item.key] += 1
        if seen[item.key] > 1:
            item.key = f"{item.key}_{seen[item.key] - 1}"
    _log_missing_captions(items)
    return items


def _log_missing_captions(items: list[AudioItem]) -> None:
    empty = [it for it in items if not it.caption]
    if empty:
        fields = sorted({k for it in empty for k in it.metadata})
        log.warning("%d of %d tracks have no caption (read from %s; sidecar .txt for folders), e.g. %s%s",
                    len(empty), len(items), "/".join(CAPTION_FIELDS), empty[0].path,
                    f"; their other fields: {fields[:8]}" if fields else "")
