"""Generation for a benchmark: one clip per caption, batched, resumable, spread over ranks, timed.

Batches are fixed by the eval set's order (batch b = items [b·bs, (b+1)·bs)) whatever the number of ranks or how
often the run was resumed, and caption i is generated from its own seed ``seed + i`` (one random stream per row,
generation/sampling.py: its clip does not depend on the batch it is in). Rank r takes every W-th
batch among those not yet complete. Each clip is generated at the batch's longest reference length, cut to its own
reference's length, loudness-normalised (−14 LUFS) and written as ``<id>.wav`` (through a temp file); a line per clip
(id, seed, batch, checksum) goes to ``generated.rank<r>.jsonl``. A rerun skips every clip listed there whose file still
has its checksum; ``settings.json`` holds the settings the clips were made with, and a rerun with other settings
into the same folder is refused in one line.

Timing per rank: wall seconds of every generate call (CUDA synchronised), the audio seconds it made, and the peak
memory (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.errors import UserError
from magnet_lightning.utils.loudness import loudness_normalize
from magnet_lightning.utils.stale_files import remove_stale

from ..generation_eval import match_length
from .prepare import read_journal, sha256, write_json

SETTINGS = "settings.json"


def check_settings(folder: Path, settings: dict[str, Any], rank: int) -> None:
    """Refuse a folder of clips generated with other settings; record the settings of a new folder (rank 0)."""
    path = folder / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != json.loads(json.dumps(settings, default=str)):
            keys = sorted(k for k in set(old) | set(settings) if old.get(k) != json.loads(json.dumps(
                settings.get(k), default=str)))
            raise UserError(f"{folder} holds clips generated with other settings ({', '.join(keys)} differ): "
                            "use another --generated folder, or the same settings to resume")
    elif rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, json.loads(json.dumps(settings, default=str)))


def generated(folder: Path) -> dict[str, dict]:
    """Clips already generated in ``folder`` (every rank's journal) whose files still have their checksum."""
    done: dict[str, dict] = {}
    for journal in sorted(folder.glob("generated.rank*.jsonl")):
        done.update(read_journal(journal, folder))
    return done


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def pending_batches(items: list[dict], done: dict[str, dict], batch_size: int) -> list[list[int]]:
    """Batches (item indices) with at least one clip not yet generated."""
    batches = [list(range(b, min(b + batch_size, len(items)))) for b in range(0, len(items), batch_size)]
    return [batch for batch in batches if any(items[i]["id"] not in done for i in batch)]


def generate_missing(generator: Any, items: list[dict], folder: Path, *, rank: int = 0, world_size: int = 1,
                     batch_size: int = 8, seed: int = 0, lufs: float | None = -14.0,
                     options: dict[str, Any] | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     melody: Callable[[dict], torch.Tensor] | None = None) -> dict[str, Any]:
    """Generate this rank's share of the missing clips of ``items`` ({id, caption, samples}) into ``folder``.

    ``generator``: a MagnetGenerator at the eval set's sample rate; ``options``: decoding overrides and
    ``extend_stride``; ``melody``: item -> the melody [C, N] it is generated with, at the generator's rate (a
    melody-conditioned checkpoint: its reference clip, metrics/benchmarks/melody.py). Returns this rank's timing:
    {"calls", "clips", "audio_seconds", "seconds", "latencies", "peak_memory_bytes"}."""
    folder.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        remove_stale(folder, ".*.tmp*")
    rate, device = int(generator.sample_rate), torch.device(generator.device)
    mine = pending_batches(items, _snapshot(folder), batch_size)[rank::world_size]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timing: dict[str, Any] = {"calls": 0, "clips": 0, "audio_seconds": 0.0, "seconds": 0.0, "latencies": []}
    with open(folder / f"generated.rank{rank}.jsonl", "a", encoding="utf-8") as journal:
        for batch in mine:
            lengths = [int(items[i]["samples"]) for i in batch]
            seeds = [seed + i for i in batch]  # one per caption: its clip does not depend on its batch
            tunes = {} if melody is None else {"melody": [melody(items[i]) for i in batch], "melody_sample_rate": rate}
            start = time.perf_counter()
            result = generator.generate([items[i]["caption"] for i in batch], duration=max(lengths) / rate,
                                        seed=seeds, progress=progress, **(options or {}), **tunes)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
            for i, item_seed, wav, length in zip(batch, seeds, result.audio.float().cpu(), lengths):
                wav = match_length(wav, length)
                entry = _write(folder, items[i]["id"], loudness_normalize(wav, rate, lufs) if lufs else wav, rate)
                journal.write(json.dumps({**entry, "seed": item_seed, "batch": batch[0] // batch_size}) + "\n")
            journal.flush()
            timing["calls"] += 1
            timing["clips"] += len(batch)
            timing["audio_seconds"] += sum(lengths) / rate
            timing["seconds"] += elapsed
            timing["latencies"].append(elapsed)
    timing["peak_memory_bytes"] = peak_memory(device)
    return timing


def _snapshot(folder: Path) -> dict[str, dict]:
    """The clips already generated, as every rank sees them: read between two barriers, so that no rank reads the
    folder after another has started writing (each rank's share of the pending batches is cut from this one list;
    a rank that read it later would miss batches another rank took)."""
    ranks = torch.distributed.is_available() and torch.distributed.is_initialized()
    if ranks:
        torch.distributed.barrier()  # rank 0 has removed stale temporaries
    done = generated(folder)
    if ranks:
        torch.distributed.barrier()
    return done


def _write(folder: Path, key: str, wav: torch.Tensor, rate: int) -> dict[str, Any]:
    import soundfile

    target = folder / f"{key}.wav"
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    soundfile.write(str(tmp), wav.numpy().T, rate, subtype="FLOAT", format="WAV")
    os.replace(tmp, target)
    return {"id": key, "file": target.name, "samples": int(wav.shape[-1]), "sha256": sha256(target)}
