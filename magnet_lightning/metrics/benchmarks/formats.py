"""The published benchmarks as data: each one's metadata file as its authors publish it, and the protocol of its clips.

- MusicCaps (Agostinelli et al. 2023): ``musiccaps-public.csv``, 5,521 rows; columns ytid, start_s, end_s,
  audioset_positive_labels, aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval. The clip is
  [start_s, end_s) (10 s) of the YouTube video's audio; reference files are named ``<ytid>.<ext>``. 32 kHz
  (audiocraft's ``musiccaps_32khz``), KL with the 20-s PaSST.
- Song Describer (Manco et al. 2023): ``song_describer.csv``; columns caption_id, track_id, caption, is_valid_subset,
  familiarity, artist_id, album_id, path, duration. One item per caption of the valid subset
  (``is_valid_subset`` true, 746 captions); the audio is ``path`` (a 2-min MP3 under the download's ``audio/``);
  the clip is its first 10 s (our choice: no model card reports Song Describer). 32 kHz, 20-s PaSST.
- AudioCaps (Kim et al. 2019): ``test.csv``; columns audiocap_id, youtube_id, start_time, caption. One item per
  caption (audiocap_id); the clip is [start_time, start_time + 10) of ``<youtube_id>.<ext>``. 16 kHz
  (``audiocaps_16khz``), KL with the 10-s PaSST (audiocraft's audio evaluation).

A reference file holds either the whole video's audio (cut at the clip's times) or the clip already cut (used from
its start); a file whose length fits neither is refused, never guessed (see `prepare.py`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from magnet_lightning.errors import UserError


@dataclass(frozen=True)
class Benchmark:
    """How to read one benchmark's metadata file and cut its reference clips."""

    name: str
    csv_name: str
    columns: tuple[str, ...]
    id_column: str
    audio_column: str
    caption_column: str
    start_column: str | None
    end_column: str | None
    clip_seconds: float
    sample_rate: int
    channels: int
    passt_length: int
    subset_column: str | None = None
    audio_folder: str = ""


BENCHMARKS: dict[str, Benchmark] = {
    "musiccaps": Benchmark(
        "musiccaps", "musiccaps-public.csv",
        ("ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
         "is_balanced_subset", "is_audioset_eval"),
        "ytid", "ytid", "caption", "start_s", "end_s", 10.0, 32000, 2, 20),
    "song-describer": Benchmark(
        "song-describer", "song_describer.csv",
        ("caption_id", "track_id", "caption", "is_valid_subset", "familiarity", "artist_id", "album_id", "path",
         "duration"),
        "caption_id", "path", "caption", None, None, 10.0, 32000, 2, 20, subset_column="is_valid_subset",
        audio_folder="audio"),
    "audiocaps": Benchmark(
        "audiocaps", "test.csv", ("audiocap_id", "youtube_id", "start_time", "caption"),
        "audiocap_id", "youtube_id", "caption", "start_time", None, 10.0, 16000, 1, 10),
}
TRUE = {"true", "1", "yes", "t"}


@dataclass(frozen=True)
class BenchmarkRow:
    """One item: its id, caption, the audio's key (file stem or relative path) and the clip's times in the source."""

    id: str
    caption: str
    audio: str
    start: float
    end: float


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"--benchmark {name!r}: unknown; one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def _seconds(value: str, column: str, where: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"{where}: {column}={value!r} is not a number of seconds") from None
    if seconds < 0:
        raise UserError(f"{where}: {column}={value!r} is negative")
    return seconds


def read_rows(spec: Benchmark, path: str | Path) -> list[BenchmarkRow]:
    """The benchmark's items in file order; a missing column, an empty caption or id, a bad time or a duplicated id
    is a one-line error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name} metadata {path} not found (download {spec.csv_name} into --data)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in spec.columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} of the published {spec.csv_name} "
                            f"(found: {', '.join(reader.fieldnames or []) or 'none'})")
        rows, seen = [], {}
        for line, record in enumerate(reader, 2):
            if spec.subset_column and str(record[spec.subset_column]).strip().lower() not in TRUE:
                continue
            rows.append(_row(spec, record, f"{path}:{line}"))
            if rows[-1].id in seen:
                raise UserError(f"{path}:{line}: id {rows[-1].id!r} is duplicated (first on line "
                                f"{seen[rows[-1].id]}); each {spec.id_column} must be unique")
            seen[rows[-1].id] = line
    if not rows:
        raise UserError(f"{path}: no items{' in the valid subset' if spec.subset_column else ''}")
    return rows


def _row(spec: Benchmark, record: dict, where: str) -> BenchmarkRow:
    key, caption, audio = (str(record[c] or "").strip() for c in (spec.id_column, spec.caption_column,
                                                                    spec.audio_column))
    if not key or not caption or not audio:
        raise UserError(f"{where}: empty {spec.id_column}, {spec.caption_column} or {spec.audio_column}")
    start = _seconds(record[spec.start_column], spec.start_column, where) if spec.start_column else 0.0
    end = _seconds(record[spec.end_column], spec.end_column, where) if spec.end_column else start + spec.clip_seconds
    if end <= start:
        raise UserError(f"{where}: the clip ends ({end:g} s) before it starts ({start:g} s)")
    return BenchmarkRow(key, caption, audio, start, end)
