"""The start-up checks of melody conditioning, before anything is loaded: a melody recipe's shards hold chroma made
the way the model's melody settings say (training), a `--melody` clip fits the checkpoint (generation), the stem
model's weights are on disk. Each mistake is one `UserError` line naming the flag or key and the fix."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from magnet_lightning.checkpoint.facts import CheckpointFacts
from magnet_lightning.codec.melody import melody_problem
from magnet_lightning.codec.stems import htdemucs_files
from magnet_lightning.config import MelodyConfig, ModelConfig
from magnet_lightning.data.shards import check_chroma, resolve_shards
from magnet_lightning.errors import UserError
from magnet_lightning.lora.files import read_adapter
from magnet_lightning.training.melody import check_melody_settings
from magnet_lightning.utils.audio import read_audio


def add_melody_options(parser) -> None:
    """The generate command line's melody flags."""
    group = parser.add_argument_group("melody conditioning (melody-conditioned checkpoints)")
    group.add_argument("--melody", default=None, metavar="AUDIO",
                       help="a melody clip every caption follows (its chroma; tiled or cut to the duration)")
    group.add_argument("--stems-model", default="htdemucs", metavar="DIR",
                       help="where demucs' htdemucs (drums and bass removed before the chroma) is read from: "
                            "'htdemucs' (the Hugging Face cache) or a folder with htdemucs.yaml + 955717e8.safetensors")


def with_adapter_melody(facts: CheckpointFacts, adapter: str | None) -> CheckpointFacts:
    """The facts of a text-only checkpoint merged with `adapter`: a melody model when the adapter's run added
    melody conditioning to it (read before any loading)."""
    if facts.melody is not None or not adapter:
        return facts
    added = read_adapter(adapter).base.melody
    return replace(facts, melody=added["settings"]) if added else facts


def generate_melody(args, facts: CheckpointFacts) -> dict:
    """The generator's melody keywords of `--melody` ({} without it), its file checked before any loading (the plan
    has checked that the checkpoint, `facts`, takes a melody)."""
    if not getattr(args, "melody", None):
        return {}
    wav, rate = check_melody_file(args.melody, facts.melody, getattr(args, "stems_model", "htdemucs"))
    return {"melody": wav, "melody_sample_rate": rate}


def _melody_config(value: Any) -> MelodyConfig | None:
    if value is None:
        return None
    values = value if isinstance(value, dict) else value.as_dict() if hasattr(value, "as_dict") else asdict(value)
    try:
        return MelodyConfig.from_dict(dict(values))
    except (TypeError, ValueError) as err:
        raise UserError(f"model.melody: {err}") from None


def check_melody_recipe(model_cfg: ModelConfig, melody_section: Any, shard_specs: list[str]) -> None:
    """Training: model.melody fits model.model.chroma_bins, and every manifest of `shard_specs` holds chroma made
    with these settings (shards tokenized with --chroma)."""
    melody = _melody_config(melody_section)
    check_melody_settings(model_cfg, melody)
    if melody is None:
        return
    for spec in shard_specs:
        shards = resolve_shards(spec)
        if shards.manifest is not None:
            check_chroma(shards.manifest, asdict(melody), where=f"shards {spec!r}")


def check_melody_file(path: str, melody: dict | None, stems_model: str = "htdemucs"):
    """Generation: `--melody PATH` for a checkpoint whose melody settings are `melody` (the plan has refused a
    text-only checkpoint). Returns (waveform [C, N], sample rate)."""
    assert melody is not None, "the plan refuses a melody for a checkpoint without melody conditioning"
    cfg = MelodyConfig.from_dict(melody)
    if not Path(path).is_file():
        raise FileNotFoundError(f"--melody: audio file {path} not found")
    try:
        wav, rate = read_audio(path)
    except ValueError as err:
        raise UserError(f"--melody: {err}") from None
    problem = melody_problem(wav, rate, cfg)
    if problem:
        raise UserError(f"--melody {path}: {problem}")
    if cfg.stems != "none":
        htdemucs_files(stems_model)  # the stem model's weights are on disk, or one line naming them
    return wav, rate
