"""Tokenize an audio collection once into EnCodec token shards (the logic behind data/tokenize_audio.py).

Input: a folder of audio files with sidecar captions (``song.wav`` + ``song.json`` or ``song.txt``), or a JSONL/CSV
manifest with a ``path`` column, a caption (``caption``/``description``/``text``) and optional metadata (genre, bpm,
key, moods, ...). Output: ``NAME-000000.tar`` shards of ``KEY.codes.npy`` (int16 [K, T], whole track) + ``KEY.json``,
and ``manifest.json``.

Multi-GPU / multi-node: the input list is cut into shards of `samples_per_shard` files in a fixed order; rank r of
world W tokenizes shards r, r + W, ...; each finished shard leaves ``NAME-000000.tar.done.json``; whichever rank
finds all shards done writes the merged manifest. Re-running skips finished shards (resume).
Unreadable, silent and too-short files are logged, counted and left out; the rest finishes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from magnet_lightning.codec import Codec, convert_audio
from magnet_lightning.data.shards import CODES_MEMBER, JSON_MEMBER, TarShardWriter, write_manifest

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
CAPTION_FIELDS = ("caption", "description", "text")
FILE_PROBLEMS = ("unreadable", "silent", "too_short")


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
    caption = next((str(record[f]) for f in CAPTION_FIELDS if record.get(f)), "")
    metadata = {k: v for k, v in record.items() if k not in CAPTION_FIELDS and k != "path" and v not in (None, "")}
    return caption, metadata


def _sidecar(audio: Path) -> tuple[str, dict]:
    meta_path, txt_path = audio.with_suffix(".json"), audio.with_suffix(".txt")
    if meta_path.is_file():
        return _split_caption(json.loads(meta_path.read_text()))
    if txt_path.is_file():
        return txt_path.read_text().strip(), {}
    return "", {}


def _records(manifest: Path) -> list[dict]:
    if manifest.suffix == ".csv":
        with open(manifest, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def scan_inputs(source: str | Path) -> list[AudioItem]:
    """List the tracks of a folder (recursive, sorted) or of a .jsonl/.csv manifest, with unique keys."""
    source = Path(source)
    items = []
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
            caption, metadata = _sidecar(path)
            items.append(AudioItem(make_key(str(path.relative_to(source))), str(path), caption, metadata))
    elif source.suffix in (".jsonl", ".csv"):
        for record in _records(source):
            if not record.get("path"):
                raise ValueError(f"{source}: record without a 'path': {record}")
            path = Path(record["path"])
            path = path if path.is_absolute() else source.parent / path
            caption, metadata = _split_caption(record)
            items.append(AudioItem(make_key(str(record["path"]).lstrip("./")), str(path), caption, metadata))
    else:
        raise ValueError(f"input {source} is neither a folder nor a .jsonl/.csv manifest")
    seen: Counter = Counter()
    for item in items:  # two files may map to the same key (a.wav and a.flac): number the later ones
        seen[item.key] += 1
        if seen[item.key] > 1:
            item.key = f"{item.key}_{seen[item.key] - 1}"
    return items


def codec_info(codec: Codec) -> dict:
    return {"name": codec.name, "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
            "num_codebooks": codec.num_codebooks, "codebook_size": codec.codebook_size, "channels": codec.channels}


class _AudioReader(torch.utils.data.Dataset):
    """Reads, checks and converts tracks to the codec's format in workers: (index, wav [C, N] | None, problem)."""

    def __init__(self, items: list[AudioItem], sample_rate: int, channels: int, min_duration: float,
                 silence_threshold: float):
        self.items, self.sample_rate, self.channels = items, sample_rate, channels
        self.min_duration, self.silence_threshold = min_duration, silence_threshold

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import soundfile as sf

        try:
            data, sr = sf.read(self.items[i].path, dtype="float32", always_2d=True)  # [N, C]
        except Exception as e:  # soundfile raises several types for bad or missing files
            return i, None, ("unreadable", f"{type(e).__name__}: {e}")
        if data.shape[0] < self.min_duration * sr:
            return i, None, ("too_short", f"{data.shape[0] / sr:.3f} s < {self.min_duration} s")
        if data.size == 0 or float(np.abs(data).max()) < self.silence_threshold:
            return i, None, ("silent", f"peak below {self.silence_threshold}")
        wav = convert_audio(torch.from_numpy(data.T.copy()), sr, self.sample_rate, self.channels)
        return i, wav, None


def _encode_batch(codec: Codec, wavs: list[torch.Tensor]) -> list[np.ndarray]:
    """Encode [C, N_i] waveforms (codec format) zero-padded to the longest; codes cut back to each track's frames."""
    longest = max(w.shape[-1] for w in wavs)
    batch = torch.zeros(len(wavs), codec.channels, longest)
    for j, w in enumerate(wavs):
        batch[j, :, : w.shape[-1]] = w
    codes = codec.encode(batch, codec.sample_rate).cpu()  # [B, K, T]
    return [codes[j, :, : codec.num_frames(w.shape[-1])].numpy().astype(np.int16) for j, w in enumerate(wavs)]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@dataclass
class TokenizeOptions:
    samples_per_shard: int = 1000  # tracks per shard (before skips)
    batch_size: int = 8  # tracks encoded together (zero-padded to the longest)
    max_batch_seconds: float = 600.0  # cap on batch_size x longest track (audio seconds), bounding encoder memory
    num_workers: int = 2  # audio-reading processes
    min_duration: float = 1.0  # seconds; shorter files are skipped
    silence_threshold: float = 1e-4  # peak amplitude under which a file counts as silent
    progress: bool = True


def _shard_plan_hash(items: list[AudioItem]) -> str:
    return hashlib.sha1("\n".join(f"{it.key}\t{it.path}" for it in items).encode()).hexdigest()[:16]


def tokenize_shard(codec: Codec, items: list[AudioItem], tar_path: Path, opts: TokenizeOptions, pbar=None) -> dict:
    """Tokenize `items` into one tar (written to a temp name, then renamed); returns its done-record."""
    reader = _AudioReader(items, codec.sample_rate, codec.channels, opts.min_duration, opts.silence_threshold)
    loader = torch.utils.data.DataLoader(reader, batch_size=None, num_workers=opts.num_workers)
    skipped, pending, written = [], [], 0
    tmp = tar_path.with_suffix(f".tar.tmp{os.getpid()}")
    with TarShardWriter(tmp) as sink:
        def flush():
            nonlocal written
            for (idx, wav), codes in zip(pending, _encode_batch(codec, [w for _, w in pending])):
                it = items[idx]
                meta = {"caption": it.caption, "metadata": it.metadata, "duration": wav.shape[-1] / codec.sample_rate,
                        "source": it.path, "num_frames": int(codes.shape[1])}
                sink.write(it.key, {CODES_MEMBER: _npy_bytes(codes), JSON_MEMBER: json.dumps(meta).encode()})
                written += 1
            pending.clear()

        for idx, wav, problem in loader:
            if problem is not None:
                log.warning("skipping %s (%s: %s)", items[idx].path, *problem)
                skipped.append({"path": items[idx].path, "reason": problem[0], "detail": problem[1]})
            else:
                longest = max([wav.shape[-1]] + [w.shape[-1] for _, w in pending])
                if pending and (len(pending) + 1) * longest > opts.max_batch_seconds * codec.sample_rate:
                    flush()  # adding this track would make the padded batch too large: encode what we have
                pending.append((idx, wav))
                if len(pending) >= opts.batch_size:
                    flush()
            if pbar is not None:
                pbar.update(1)
        if pending:
            flush()
    if written:
        os.replace(tmp, tar_path)
    else:
        tmp.unlink()
    return {"url": tar_path.name, "num_samples": written, "skipped": skipped, "codec": codec_info(codec),
            "plan": _shard_plan_hash(items)}


def _done_path(out_dir: Path, name: str, index: int) -> Path:
    return out_dir / f"{name}-{index:06d}.tar.done.json"


def merge_manifest(out_dir: Path, name: str, num_shards: int) -> Path | None:
    """Write manifest.json once every shard has its done-record; returns its path, or None if shards are missing."""
    done = [_done_path(out_dir, name, i) for i in range(num_shards)]
    if not all(p.is_file() for p in done):
        return None
    records = [json.loads(p.read_text()) for p in done]
    codecs = {json.dumps(r["codec"], sort_keys=True) for r in records}
    if len(codecs) != 1:
        raise RuntimeError(f"shards in {out_dir} were made with different codecs: {codecs}")
    problems = Counter(s["reason"] for r in records for s in r["skipped"])
    shards = [{"url": r["url"], "num_samples": r["num_samples"]} for r in records if r["num_samples"] > 0]
    return write_manifest(out_dir, records[0]["codec"], shards, name=name,
                          skipped={p: problems.get(p, 0) for p in FILE_PROBLEMS})


def tokenize_dataset(source: str | Path, out_dir: str | Path, codec: Codec, name: str = "shard",
                     opts: TokenizeOptions | None = None, rank: int = 0, world_size: int = 1) -> dict:
    """Tokenize this rank's shards of `source` into `out_dir`, skipping finished ones; merge the manifest when all are.

    Returns:
        {"shards_done": [...this call's new shard indices], "shards_skipped": [...already done], "written": n,
         "skipped": {reason: n}, "manifest": path or None}.
    """
    from tqdm import tqdm

    opts = opts or TokenizeOptions()
    if "." in name or "/" in name:
        raise ValueError(f"shard name {name!r} must not contain '.' or '/'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = scan_inputs(source)
    if not items:
        raise ValueError(f"no audio files found in {source}")
    plan = [items[i: i + opts.samples_per_shard] for i in range(0, len(items), opts.samples_per_shard)]
    mine = list(range(rank, len(plan), world_size))
    summary = {"shards_done": [], "shards_skipped": [], "written": 0, "skipped": Counter()}
    todo = []
    for i in mine:
        done = _done_path(out_dir, name, i)
        if done.is_file():
            record = json.loads(done.read_text())
            if record["plan"] != _shard_plan_hash(plan[i]) or record["codec"] != codec_info(codec):
                raise RuntimeError(f"{done} was made from other inputs or another codec; use a fresh output folder")
            summary["shards_skipped"].append(i)
        else:
            todo.append(i)
    with tqdm(total=sum(len(plan[i]) for i in todo), desc=f"rank {rank}", position=rank,
              disable=not opts.progress) as pbar:
        for i in todo:
            record = tokenize_shard(codec, plan[i], out_dir / f"{name}-{i:06d}.tar", opts, pbar)
            tmp = _done_path(out_dir, name, i).with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, _done_path(out_dir, name, i))
            summary["shards_done"].append(i)
            summary["written"] += record["num_samples"]
            summary["skipped"].update(s["reason"] for s in record["skipped"])
    summary["skipped"] = dict(summary["skipped"])
    summary["manifest"] = merge_manifest(out_dir, name, len(plan))
    return summary
