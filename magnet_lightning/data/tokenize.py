"""Tokenize an audio collection once into EnCodec token shards (the logic behind data/tokenize_audio.py).

Input: a folder of audio files with sidecar captions (``song.wav`` + ``song.json`` or ``song.txt``), or a JSONL/CSV
manifest with a ``path`` column, a caption (``caption``/``description``/``text``) and optional metadata (genre, bpm,
key, moods, ...). Output: ``NAME-000000.tar`` shards of ``KEY.codes.npy`` (int16 [K, T], whole track) +
``KEY.json`` (+ with a melody extractor, ``KEY.chroma.npy``: float16 [Tc, 12], the whole track's chroma, so melody
models train without audio), and ``manifest.json``.

Multi-GPU / multi-node: the input list is cut into shards of `samples_per_shard` files in a fixed order; rank r of
world W tokenizes shards r, r + W, ...; each finished shard leaves ``NAME-000000.tar.done.json``; whichever rank
finds all shards done writes the merged manifest. Re-running skips finished shards (resume); a re-run on a changed
input says what changed and stops, unless asked to redo the changed shards (``on_change="incremental"``) or all of
them (``"force"``). Temporary files of killed writes are removed at the next start.
Per-file problems (unreadable or unsupported format, too many channels, NaN/Inf samples, silent, too short) are
logged, counted by reason and left out; the rest of the shard finishes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from magnet_lightning.codec.codecs import Codec, convert_audio
from magnet_lightning.codec.melody import MelodyExtractor
from magnet_lightning.data.inputs import AUDIO_EXTENSIONS, AudioItem, scan_inputs
from magnet_lightning.data.shards import (
    CHROMA_FIELDS,
    CHROMA_MEMBER,
    CODES_MEMBER,
    JSON_MEMBER,
    MANIFEST_NAME,
    TarShardWriter,
    codec_base_name,
    write_manifest,
)
from magnet_lightning.errors import UserError
from magnet_lightning.utils.stale_files import remove_stale

log = logging.getLogger(__name__)

FILE_PROBLEMS = ("unreadable", "unsupported", "channels", "non_finite", "silent", "too_short")
ON_CHANGE = ("error", "incremental", "force")


def codec_info(codec: Codec) -> dict:
    """The manifest's codec fields; a local codec's absolute folder (`source`), and `random_weights` for a stand-in."""
    info = {"name": codec.name, "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate,
            "num_codebooks": codec.num_codebooks, "codebook_size": codec.codebook_size, "channels": codec.channels}
    if getattr(codec, "source", ""):
        info["source"] = codec.source
    if getattr(codec, "random_weights", False):
        info["random_weights"] = True
    return info


def chroma_info(chroma: MelodyExtractor | None) -> dict:
    """The manifest's `chroma` settings (how the stored chroma was computed; `data.shards.CHROMA_FIELDS` and its
    rate), {} without."""
    if chroma is None:
        return {}
    cfg = chroma.cfg
    return {"chroma": {**{k: getattr(cfg, k) for k in CHROMA_FIELDS}, "hop_length": cfg.hop_length,
                       "chroma_rate": cfg.chroma_rate}}


def _track_chroma(chroma: MelodyExtractor, wav: torch.Tensor, sample_rate: int) -> np.ndarray:
    """float16 [Tc, C] of a track [C, N] in the codec's format (down-mixed, resampled to the chroma's rate)."""
    mono = wav.float().mean(dim=0, keepdim=True)
    if sample_rate != chroma.cfg.sample_rate:
        mono = convert_audio(mono, sample_rate, chroma.cfg.sample_rate, 1)
    return chroma.chroma(mono[None])[0].cpu().numpy().astype(np.float16)


def _same_codec(recorded: dict, expected: dict) -> bool:
    """A done-record's codec is the expected one (its folder may have moved since: `source` is not compared)."""
    return {k: v for k, v in recorded.items() if k != "source"} == {k: v for k, v in expected.items() if k != "source"}


def _channels_fit(channels: int, target: int) -> bool:
    """convert_audio's rule: anything down-mixes to mono, mono copies to any width, otherwise widths must match."""
    return target == 1 or channels == 1 or channels == target


class _AudioReader(torch.utils.data.Dataset):
    """Reads, checks and converts tracks to the codec's format in workers: (index, wav [C, N] | None, problem)."""

    def __init__(self, items: list[AudioItem], sample_rate: int, channels: int, min_duration: float,
                 silence_threshold: float):
        self.items, self.sample_rate, self.channels = items, sample_rate, channels
        self.min_duration, self.silence_threshold = min_duration, silence_threshold

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        data, sr, problem = self._read(self.items[i].path)
        if problem is not None:
            return i, None, problem
        wav = convert_audio(torch.from_numpy(data.T.copy()), sr, self.sample_rate, self.channels)
        return i, wav, None

    def _read(self, path: str) -> tuple[np.ndarray | None, int, tuple[str, str] | None]:
        """(data [N, C] float32, sample rate, None), or (None, 0, (reason, detail)) for a file left out."""
        import soundfile as sf

        try:
            data, sr = sf.read(path, dtype="float32", always_2d=True)  # [N, C]
        except Exception as e:  # soundfile raises several types for bad, missing or unknown files
            reason = "unreadable" if Path(path).suffix.lower() in AUDIO_EXTENSIONS else "unsupported"
            return None, 0, (reason, f"{type(e).__name__}: {e}")
        if not np.isfinite(data).all():
            return None, 0, ("non_finite", f"{int((~np.isfinite(data)).sum())} NaN/Inf samples")
        if not _channels_fit(data.shape[1], self.channels):
            return None, 0, ("channels", f"{data.shape[1]} channels; the codec takes {self.channels} (or mono)")
        if data.shape[0] < self.min_duration * sr:
            return None, 0, ("too_short", f"{data.shape[0] / sr:.3f} s < {self.min_duration} s")
        if data.size == 0 or float(np.abs(data).max()) < self.silence_threshold:
            return None, 0, ("silent", f"peak below {self.silence_threshold}")
        return data, sr, None


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


def make_plan(items: list[AudioItem], samples_per_shard: int) -> list[list[AudioItem]]:
    """The fixed cut of the (ordered) input into shards: shard i holds items [i * n, (i + 1) * n)."""
    return [items[i: i + samples_per_shard] for i in range(0, len(items), samples_per_shard)]


def tokenize_shard(codec: Codec, items: list[AudioItem], tar_path: Path, opts: TokenizeOptions, pbar=None,
                   chroma: MelodyExtractor | None = None) -> dict:
    """Tokenize `items` into one tar (written to a temp name, then renamed), with each track's chroma when a
    melody extractor is given; returns its done-record."""
    reader = _AudioReader(items, codec.sample_rate, codec.channels, opts.min_duration, opts.silence_threshold)
    loader = torch.utils.data.DataLoader(reader, batch_size=None, num_workers=opts.num_workers)
    skipped, pending, written, uncaptioned = [], [], 0, 0
    tmp = tar_path.with_suffix(f".tar.tmp{os.getpid()}")
    with TarShardWriter(tmp) as sink:
        def flush():
            nonlocal written, uncaptioned
            for (idx, wav), codes in zip(pending, _encode_batch(codec, [w for _, w in pending])):
                it = items[idx]
                meta = {"caption": it.caption, "metadata": it.metadata, "duration": wav.shape[-1] / codec.sample_rate,
                        "source": it.path, "num_frames": int(codes.shape[1])}
                members = {CODES_MEMBER: _npy_bytes(codes), JSON_MEMBER: json.dumps(meta).encode()}
                if chroma is not None:
                    members[CHROMA_MEMBER] = _npy_bytes(_track_chroma(chroma, wav, codec.sample_rate))
                sink.write(it.key, members)
                written += 1
                uncaptioned += not it.caption
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
    return {"url": tar_path.name, "num_samples": written, "skipped": skipped, "empty_captions": uncaptioned,
            "codec": {**codec_info(codec), **chroma_info(chroma)}, "plan": _shard_plan_hash(items),
            "items": [[it.key, it.path] for it in items]}


def _done_path(out_dir: Path, name: str, index: int) -> Path:
    return out_dir / f"{name}-{index:06d}.tar.done.json"


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _matches(record: dict | None, shard: list[AudioItem], codec_ok) -> bool:
    return record is not None and record.get("plan") == _shard_plan_hash(shard) and codec_ok(record.get("codec", {}))


def merge_manifest(out_dir: Path, name: str, plan: list[list[AudioItem]], codec: Codec,
                   chroma: MelodyExtractor | None = None) -> Path | None:
    """Write manifest.json once every shard of `plan` has a done-record of its inputs and `codec` (and chroma
    settings); returns its path, or None while shards are missing (another rank may still be working)."""
    records = [_read_record(_done_path(out_dir, name, i)) for i in range(len(plan))]
    expected = {**codec_info(codec), **chroma_info(chroma)}
    if not all(_matches(r, shard, lambda c: _same_codec(c, expected)) for r, shard in zip(records, plan)):
        return None
    problems = Counter(s["reason"] for r in records for s in r["skipped"])
    shards = [{"url": r["url"], "num_samples": r["num_samples"]} for r in records if r["num_samples"] > 0]
    return write_manifest(out_dir, expected, shards, name=name, skipped={p: problems.get(p, 0) for p in FILE_PROBLEMS},
                          empty_captions=sum(int(r.get("empty_captions", 0)) for r in records),
                          **chroma_info(chroma))


@dataclass
class OutputState:
    """Finished shards of an output folder, compared with the current plan and codec."""

    kept: list[int]
    """Done shards made from the same inputs with the same codec."""
    changed: list[int]
    """Done shards made from other inputs or another codec, or beyond the end of the plan."""
    description: str
    """What changed, for the user ('' when nothing did)."""


def _examples(paths: set[str]) -> str:
    return ", ".join(Path(p).name for p in sorted(paths)[:3]) + (", ..." if len(paths) > 3 else "")


def inspect_output(out_dir: str | Path, name: str, plan: list[list[AudioItem]], codec_ok) -> OutputState:
    """Compare the done-records in `out_dir` with `plan`; `codec_ok(record_codec_info) -> bool`."""
    out_dir = Path(out_dir)
    kept, changed, old_paths, other_codec = [], [], set(), set()
    for path in sorted(out_dir.glob(f"{name}-*.tar.done.json")):
        found = re.fullmatch(rf"{re.escape(name)}-(\d+)\.tar\.done\.json", path.name)
        if found is None:
            continue
        index, record = int(found.group(1)), _read_record(path)
        old_paths.update(p for _, p in (record or {}).get("items", []))
        if index < len(plan) and _matches(record, plan[index], codec_ok):
            kept.append(index)
            continue
        changed.append(index)
        if record is not None and not codec_ok(record.get("codec", {})):
            other_codec.add(str(record.get("codec", {}).get("name")))
    if not changed:
        return OutputState(kept, changed, "")
    new_paths = {it.path for shard in plan for it in shard}
    parts = []
    if old_paths:
        added = {it.path for i in changed if i < len(plan) for it in plan[i]} - old_paths
        removed = old_paths - new_paths
        if added:
            parts.append(f"{len(added)} new input file(s) ({_examples(added)})")
        if removed:
            parts.append(f"{len(removed)} input file(s) gone ({_examples(removed)})")
    if other_codec:
        parts.append(f"shards made with another codec ({', '.join(sorted(other_codec))})")
    parts.append(f"{len(changed)} of {len(kept) + len(changed)} finished shards differ from the current input "
                 f"(e.g. shard {changed[0]})")
    return OutputState(kept, changed, "; ".join(parts))


def _remove_shard(out_dir: Path, name: str, index: int) -> None:
    for path in (out_dir / f"{name}-{index:06d}.tar", _done_path(out_dir, name, index)):
        path.unlink(missing_ok=True)


def _remove_stale_temporaries(out_dir: Path, name: str, indices: list[int]) -> None:
    """Temp files of killed writes of this rank's shards (and of the manifest)."""
    for i in indices:
        remove_stale(out_dir, f"{name}-{i:06d}.tar.tmp*")
        remove_stale(out_dir, f"{name}-{i:06d}.tar.done.tmp")
    remove_stale(out_dir, f"{MANIFEST_NAME}.tmp*")


def check_output(out_dir: str | Path, name: str, plan: list[list[AudioItem]], codec_ok, on_change: str) -> OutputState:
    """The output folder's state; raises UserError (what changed, and the options) if it holds shards of another
    input or codec and `on_change` is 'error'."""
    if on_change not in ON_CHANGE:
        raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
    state = inspect_output(out_dir, name, plan, codec_ok)
    if state.changed and on_change == "error":
        raise UserError(
            f"{out_dir} already holds {name!r} shards of a different input: {state.description}. Re-run with "
            f"--incremental to re-tokenize only the {len(state.changed)} changed shard(s) and keep the other "
            f"{len(state.kept)}, or --force to re-tokenize everything, or choose a fresh --output folder.")
    return state


def same_codec_name(codec_name: str):
    """A `codec_ok` test for `check_output` before the codec is loaded: the recorded codec has the same name."""
    return lambda info: codec_base_name(str(info.get("name", ""))) == codec_base_name(codec_name)


def tokenize_dataset(source: str | Path | list[AudioItem], out_dir: str | Path, codec: Codec, name: str = "shard",
                     opts: TokenizeOptions | None = None, rank: int = 0, world_size: int = 1,
                     on_change: str = "error", chroma: MelodyExtractor | None = None) -> dict:
    """Tokenize this rank's shards of `source` (a folder, a .jsonl/.csv manifest or already scanned items) into
    `out_dir`, skipping finished ones; merge the manifest when all are. `chroma`: also store each track's chroma.

    on_change: what to do when `out_dir` holds shards made from other inputs or another codec: 'error' (say what
    changed), 'incremental' (re-tokenize only the changed shards) or 'force' (re-tokenize every shard).

    Returns:
        {"shards_done": [...this call's new shard indices], "shards_skipped": [...already done], "written": n,
         "skipped": {reason: n}, "empty_captions": n, "manifest": path or None}.
    """
    from tqdm import tqdm

    opts = opts or TokenizeOptions()
    if "." in name or "/" in name or not name:
        raise UserError(f"shard name {name!r} must be non-empty and contain no '.' or '/'")
    items = list(source) if isinstance(source, list) else scan_inputs(source)
    if not items:
        raise UserError(f"no audio files found in {source}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = make_plan(items, opts.samples_per_shard)
    expected = {**codec_info(codec), **chroma_info(chroma)}
    state = check_output(out_dir, name, plan, lambda c: _same_codec(c, expected), on_change)
    redo = state.changed + (state.kept if on_change == "force" else [])
    for i in redo:
        if i % world_size == rank:  # each rank clears only its own shards
            _remove_shard(out_dir, name, i)
    if redo:
        (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # rewritten when every shard is done again
    mine = list(range(rank, len(plan), world_size))
    _remove_stale_temporaries(out_dir, name, mine)
    summary = {"shards_done": [], "shards_skipped": [], "written": 0, "skipped": Counter(), "empty_captions": 0}
    todo = []
    for i in mine:
        if _done_path(out_dir, name, i).is_file():
            summary["shards_skipped"].append(i)
        else:
            todo.append(i)
    with tqdm(total=sum(len(plan[i]) for i in todo), desc=f"rank {rank}", position=rank,
              disable=not opts.progress) as pbar:
        for i in todo:
            record = tokenize_shard(codec, plan[i], out_dir / f"{name}-{i:06d}.tar", opts, pbar, chroma)
            tmp = _done_path(out_dir, name, i).with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, _done_path(out_dir, name, i))
            summary["shards_done"].append(i)
            summary["written"] += record["num_samples"]
            summary["empty_captions"] += record["empty_captions"]
            summary["skipped"].update(s["reason"] for s in record["skipped"])
    summary["skipped"] = dict(summary["skipped"])
    summary["manifest"] = merge_manifest(out_dir, name, plan, codec, chroma)
    return summary
