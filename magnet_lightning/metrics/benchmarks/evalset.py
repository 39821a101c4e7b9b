"""A prepared eval set (see `prepare.py`) read back and checked, and the reference statistics computed on it once.

Reference statistics: per item, the frames of the distribution embedder (FAD / KAD / FAD∞), PaSST's per-segment
label distributions (KL) and the CLAP audio embedding, in ONE file named by the hash of the protocol that made it:
benchmark, the eval set's checksums, sample rate and every embedder's name, settings and weights fingerprint. A file
made under another protocol is refused in one line naming what differs.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from magnet_lightning.errors import UserError

from .prepare import FORMAT, MANIFEST, VERSION, sha256

STATS_FORMAT, STATS_VERSION = "magnet_lightning.reference_stats", 1


@dataclass
class EvalSet:
    folder: Path
    manifest: dict

    @property
    def items(self) -> list[dict]:
        return self.manifest["items"]

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    def path(self, item: dict) -> Path:
        return self.folder / item["file"]

    def checksum(self) -> str:
        """One SHA-256 over the items' ids, captions and file checksums (the reference set's identity)."""
        lines = [f"{i['id']}\t{i['caption']}\t{i['sha256']}" for i in self.items]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_eval_set(folder: str | Path, benchmark: str | None = None, verify: bool = True) -> EvalSet:
    """The eval set in ``folder``; every file must exist with its checksum and sample rate (one-line errors)."""
    import soundfile

    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no prepared eval set ({MANIFEST}): run the same command with "
                                f"--prepare first")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UserError(f"{path} is not a magnet_lightning eval set manifest ({FORMAT} v{VERSION})")
    if benchmark is not None and manifest.get("benchmark") != benchmark:
        raise UserError(f"{folder} is a {manifest.get('benchmark')} eval set, not {benchmark}")
    evalset = EvalSet(folder, manifest)
    for item in evalset.items if verify else []:
        file = evalset.path(item)
        if not file.is_file() or sha256(file) != item["sha256"]:
            raise UserError(f"{file}: missing or changed since --prepare (checksum differs): run --prepare again")
        rate = soundfile.info(str(file)).samplerate
        if rate != evalset.sample_rate:
            raise UserError(f"{file}: {rate} Hz, but the eval set is {evalset.sample_rate} Hz: run --prepare again")
    return evalset


def protocol_hash(protocol: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stats_path(where: str | Path, protocol: dict[str, Any]) -> Path:
    """The statistics file of ``protocol``: ``where`` itself if it names a .pt file, else a file in that folder."""
    where = Path(where)
    return where if where.suffix == ".pt" else where / f"reference_stats-{protocol_hash(protocol)}.pt"


def _differences(theirs: dict, ours: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} (file) vs {b!r} (this run)")
    return out


def load_stats(path: Path, protocol: dict[str, Any]) -> dict[str, Any]:
    """Statistics saved under ``protocol``; a file from another protocol or embedder is refused in one line."""
    stats = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stats, dict) or stats.get("format") != STATS_FORMAT:
        raise UserError(f"{path} is not a reference-statistics file ({STATS_FORMAT})")
    if stats.get("hash") != protocol_hash(protocol):
        diff = "; ".join(_differences(stats.get("protocol", {}), protocol)[:4])
        raise UserError(f"{path} was computed under another protocol ({diff}): remove it, or point "
                        f"--reference-stats at a folder, to compute the statistics of this protocol")
    return stats


def save_stats(path: Path, protocol: dict[str, Any], ids: list[str], features: dict[str, list[Tensor]]) -> None:
    """Write the per-item features (role -> list of [F_i, D]) atomically, named by the protocol's hash."""
    stats = {"format": STATS_FORMAT, "version": STATS_VERSION, "protocol": protocol, "hash": protocol_hash(protocol),
             "ids": list(ids), "features": {role: pack(rows) for role, rows in features.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(stats, tmp)
    os.replace(tmp, path)


def pack(rows: list[Tensor]) -> dict[str, Tensor]:
    """Per-item rows [F_i, D] -> {"rows": [sum F_i, D], "offsets": [n + 1]}."""
    lengths = torch.tensor([0] + [r.shape[0] for r in rows])
    return {"rows": torch.cat([r.float().cpu() for r in rows]), "offsets": lengths.cumsum(0)}


def unpack(packed: dict[str, Tensor]) -> list[Tensor]:
    offsets = packed["offsets"].tolist()
    return [packed["rows"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
