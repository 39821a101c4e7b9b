"""``--prepare``: cut, resample and write a benchmark's reference clips as an eval set with a manifest and checksums.

Steps: read the metadata file (`formats.read_rows`); find each item's audio in the download folder; decide how to cut
it (whole-video file: the clip's [start, end); a file already cut: from its start; any other length: refused, never
guessed); check everything *before* writing: missing, unreadable, ambiguous and too-short items are counted and every
id listed in the log, and the run stops in one line unless ``--allow-missing N`` covers them. Then each clip is read,
mixed to the benchmark's channels (audiocraft's rules), resampled with julius (as audiocraft's ``convert_audio``) and
written as 16-bit WAV ``<id>.wav`` (through a temp file), its SHA-256 appended to ``clips.jsonl``. An interrupted
preparation resumes from ``clips.jsonl`` (a clip whose file still has its checksum is not redone); ``manifest.json``
is written last, atomically, and marks the set complete.

Manifest: {format, version, benchmark, csv {path, sha256}, sample_rate, clip_seconds, items: [{id, caption, file,
samples, channels, sha256, source, start, cut}], skipped: {reason: [ids]}, allow_missing}.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import julius
import torch

from magnet_lightning.errors import UserError
from magnet_lightning.utils.stale_files import remove_stale

from .formats import Benchmark, BenchmarkRow, read_rows

log = logging.getLogger(__name__)
FORMAT, VERSION = "magnet_lightning.benchmark_eval_set", 1
MANIFEST, PROGRESS = "manifest.json", "clips.jsonl"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
TOLERANCE = 0.05  # seconds of slack when telling a whole-video file from a cut clip
MIN_SECONDS = 1.0  # audiocraft's evaluation drops clips shorter than 1 s (min_audio_duration), as we do


@dataclass
class Clip:
    """Where one item's reference comes from: the file, the first frame and the frame count at its own rate."""

    row: BenchmarkRow
    source: Path
    rate: int
    start: int
    frames: int
    cut: str


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_audio(spec: Benchmark, data: Path, row: BenchmarkRow) -> Path | None:
    """The item's audio file in the download folder (``<key>.<ext>``, or the relative path the metadata gives)."""
    folders = [data / spec.audio_folder, data] if spec.audio_folder else [data]
    if Path(row.audio).suffix:
        candidates = [folder / row.audio for folder in folders]
    else:
        candidates = [folder / f"{row.audio}{suffix}" for folder in folders for suffix in AUDIO_SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


def plan_clip(spec: Benchmark, data: Path, row: BenchmarkRow, min_seconds: float) -> Clip | str:
    """The item's Clip, or the reason it cannot be used (missing, unreadable, ambiguous_length, too_short)."""
    import soundfile

    path = find_audio(spec, data, row)
    if path is None:
        return "missing"
    try:
        info = soundfile.info(str(path))
    except Exception:  # noqa: BLE001 - any failure to open means unreadable
        return "unreadable"
    rate, seconds, length = int(info.samplerate), info.frames / info.samplerate, row.end - row.start
    if seconds >= row.end - TOLERANCE:
        clip = Clip(row, path, rate, int(round(row.start * rate)), 0, "full")
        clip.frames = min(info.frames, int(round(row.end * rate))) - clip.start
    elif seconds <= length + TOLERANCE:
        clip = Clip(row, path, rate, 0, min(info.frames, int(round(length * rate))), "pre-cut")
    else:
        return "ambiguous_length"
    return clip if clip.frames / rate >= min_seconds else "too_short"


def plan(spec: Benchmark, rows: list[BenchmarkRow], data: Path, allow_missing: int,
         min_seconds: float = MIN_SECONDS) -> tuple[list[Clip], dict[str, list[str]]]:
    """Every item's Clip; refuses in one line when more items than ``allow_missing`` cannot be used."""
    clips, skipped = [], {}
    for row in rows:
        result = plan_clip(spec, data, row, min_seconds)
        if isinstance(result, str):
            skipped.setdefault(result, []).append(row.id)
        else:
            clips.append(result)
    bad = sum(len(ids) for ids in skipped.values())
    for reason, ids in skipped.items():
        log.warning("%s: %d item(s) %s: %s", spec.name, len(ids), reason, ", ".join(ids))
    if bad > allow_missing:
        counts = ", ".join(f"{len(ids)} {reason}" for reason, ids in skipped.items())
        raise UserError(f"{bad} of {len(rows)} {spec.name} items have no usable audio in {data} ({counts}; ids in "
                        f"the log above, e.g. {next(iter(skipped.values()))[:3]}): download them, or pass "
                        f"--allow-missing {bad} to evaluate without them")
    return clips, skipped


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """[C, L] -> at most ``channels`` channels: mono by the mean, else the first ones (audiocraft's rules)."""
    if wav.shape[0] <= channels:
        return wav
    return wav.mean(0, keepdim=True) if channels == 1 else wav[:channels]


def write_clip(clip: Clip, spec: Benchmark, out: Path) -> dict:
    """Cut, mix, resample and write one clip; its manifest entry."""
    import soundfile

    data, _ = soundfile.read(str(clip.source), start=clip.start, frames=clip.frames, dtype="float32", always_2d=True)
    wav = to_channels(torch.from_numpy(data.T.copy()), spec.channels)
    if clip.rate != spec.sample_rate:
        wav = julius.resample_frac(wav, clip.rate, spec.sample_rate)
    target = out / f"{clip.row.id}.wav"
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    soundfile.write(str(tmp), wav.clamp(-1, 1).numpy().T, spec.sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, target)
    return {"id": clip.row.id, "caption": clip.row.caption, "file": target.name, "samples": int(wav.shape[-1]),
            "channels": int(wav.shape[0]), "sha256": sha256(target), "source": str(clip.source),
            "start": clip.row.start, "cut": clip.cut}


def _done(out: Path) -> dict[str, dict]:
    """Clips written by an earlier, interrupted preparation whose files still have their checksum."""
    progress = out / PROGRESS
    return read_journal(progress, out) if progress.is_file() else {}


def read_journal(journal: Path, folder: Path) -> dict[str, dict]:
    """id -> entry of a JSON-lines journal of written files ({id, file, sha256, ...}), for the entries whose file in
    `folder` still has its checksum (a line cut by an interruption, or a file changed since, is left out)."""
    done = {}
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the interruption
            continue
        path = folder / entry.get("file", "")
        if path.is_file() and sha256(path) == entry.get("sha256"):
            done[entry["id"]] = entry
    return done


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prepare(spec: Benchmark, csv_path: Path, data: Path, out: Path, allow_missing: int = 0,
            progress: bool = True) -> dict:
    """Write the eval set of ``spec`` into ``out`` (resumable); returns its manifest."""
    rows = read_rows(spec, csv_path)
    clips, skipped = plan(spec, rows, data, allow_missing)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out, ".*.tmp*")
    done = _done(out)
    if done:
        log.info("Resuming: %d of %d clips already prepared in %s", len(done), len(clips), out)
    entries = []
    with open(out / PROGRESS, "a", encoding="utf-8") as journal:
        for number, clip in enumerate(clips, 1):
            entry = done.get(clip.row.id) or write_clip(clip, spec, out)
            if clip.row.id not in done:
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
            entries.append(entry)
            if progress and number % 100 == 0:
                log.info("prepared %d / %d clips", number, len(clips))
    manifest = {"format": FORMAT, "version": VERSION, "benchmark": spec.name,
                "csv": {"path": str(csv_path), "sha256": sha256(csv_path)}, "sample_rate": spec.sample_rate,
                "clip_seconds": spec.clip_seconds, "items": entries, "skipped": skipped,
                "allow_missing": allow_missing}
    write_json(out / MANIFEST, manifest)
    log.info("%s eval set: %d clips at %d Hz in %s (%d skipped)", spec.name, len(entries), spec.sample_rate, out,
             sum(len(v) for v in skipped.values()))
    return manifest
