"""What a checkpoint says about itself, read without building its model, T5 or codec: `peek_checkpoint` for our
Lightning checkpoints, export folders, audiocraft `state_dict.bin` files and released repo ids. A generation plan is
built from these facts (generation/plan.py) before anything is loaded.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import audiocraft_metadata
from magnet_lightning.checkpoint.audiocraft_config import ConfigError, read_lm_config
from magnet_lightning.checkpoint.pretrained import (
    CONFIG_NAME,
    export_codec,
    is_export,
    lightning_metadata,
    recorded_random_parts,
)
from magnet_lightning.errors import UserError, one_line
from magnet_lightning.models.registry import family_of


@dataclass(frozen=True)
class CheckpointFacts:
    """A checkpoint's facts for planning and checking a generation."""

    family: str
    num_codebooks: int
    codebook_size: int
    segment_duration: float
    codec: str
    text_encoder: str
    span_len: int = 3
    decoding: dict | None = None
    """The decoding options it records (its family's option names; 'preset')."""
    path: str = ""
    """The checkpoint as the user named it (for messages)."""
    frame_rate: float = 50.0
    random_parts: tuple[str, ...] = ()
    """Parts recorded as random-weight stand-ins ('codec', 'text_encoder')."""
    sample_rate: int = 32000
    delays: tuple[int, ...] | None = None
    """The delay pattern of a family that has one (None: 0, 1, ..., K-1 there; no pattern elsewhere)."""
    melody: dict | None = None
    """A melody-conditioned checkpoint's chroma settings (config.MelodyConfig fields), None for a text-only one."""

    def frames(self, seconds: float) -> int:
        """Frames of `seconds` of generated audio (at least 1)."""
        return max(1, round(seconds * self.frame_rate))

    def audio_frames(self, num_samples: int, sample_rate: int) -> int:
        """Frames the codec gives for a clip of `num_samples` at `sample_rate` (resampled to its rate, then one
        frame per hop, the last one partial: the codec layer's rule)."""
        resampled = math.ceil(num_samples * self.sample_rate / sample_rate)
        return math.ceil(resampled * self.frame_rate / self.sample_rate)


def _load_light(path: Path) -> object:
    """torch.load as data only, memory-mapped when the file format allows it (tensors are not read)."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise UserError(f"{path} is not a readable torch checkpoint (it is only ever read as data): "
                        f"{one_line(err)[:300]}") from None


def _export_facts(path: str | Path, folder: Path) -> CheckpointFacts:
    folder = folder if folder.is_dir() else folder.parent
    config = json.loads((folder / CONFIG_NAME).read_text())
    model = config.get("model") or {}
    codec = export_codec(folder, config)
    delays = config.get("delays")
    return CheckpointFacts(family_of(config), int(model.get("num_codebooks", 4)),
                           int(model.get("codebook_size", 2048)), float(config.get("segment_duration", 10.0)),
                           codec, str(config.get("text_encoder")), int(config.get("span_len", 3)),
                           dict(config.get("decoding") or {}), str(path), float(config.get("frame_rate", 50.0)),
                           tuple(recorded_random_parts(config, codec)), int(config.get("sample_rate", 32000)),
                           tuple(delays) if delays else None, config.get("melody"))


def peek_checkpoint(path: str | Path) -> CheckpointFacts:
    """Facts of our Lightning checkpoint, an export folder, an audiocraft state_dict.bin or a released repo id, read
    without building any model (an audiocraft file's facts come from its xp.cfg; its tensors are memory-mapped)."""
    folder = hub.expand(path)
    if is_export(folder):  # an export folder: its config.json says everything
        return _export_facts(path, folder)
    source = hub.resolve_lm(path)
    raw = _load_light(source.path)
    if isinstance(raw, dict) and "best_state" in raw:
        try:
            spec = read_lm_config(raw.get("xp.cfg"))
        except ConfigError as err:
            raise UserError(f"{source.path}: {err}") from None
        meta = {**audiocraft_metadata(spec, source), "num_codebooks": spec.model.num_codebooks,
                "codebook_size": spec.model.codebook_size}
    else:
        hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
        if not isinstance((hp or {}).get("model"), dict) or "num_codebooks" not in hp["model"]:
            raise UserError(f"{source.path}: neither a magnet_lightning checkpoint (hyper_parameters.model) nor an "
                            "audiocraft state_dict.bin (best_state + xp.cfg)")
        meta = {**lightning_metadata(hp), "delays": hp.get("delays")}
        meta["random_parts"] = recorded_random_parts(raw, meta["codec"])
    return CheckpointFacts(meta["family"], meta["num_codebooks"], meta["codebook_size"],
                           float(meta["segment_duration"]), str(meta["codec"]), str(meta["text_encoder"]),
                           int(meta["span_len"]), dict(meta["decoding"]), str(path),
                           float(meta["frame_rate"]), tuple(meta.get("random_parts") or ()),
                           int(meta["sample_rate"]), tuple(meta["delays"]) if meta.get("delays") else None,
                           meta.get("melody"))
