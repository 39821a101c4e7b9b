"""Load a model of either family for inference from any supported file: our Lightning checkpoint (training output or
a converted one), an audiocraft `state_dict.bin`, or a released hub repo id (facebook/magnet-small-10secs,
facebook/musicgen-small), with the metadata generation needs. The family is the checkpoint's: hyper-parameter
`family` ('musicgen', with the pattern's `delays`; absent means 'magnet'), or the xp.cfg's `lm_model`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import read_audiocraft
from magnet_lightning.checkpoint.lazy_load import assign_weights, empty_model, load_safetensors, read_torch_file
from magnet_lightning.config import ModelConfig
from magnet_lightning.errors import CheckpointError
from magnet_lightning.lora.adapters import merge_lora
from magnet_lightning.lora.files import CHECKPOINT_KEY as LORA_CHECKPOINT_KEY
from magnet_lightning.lora.files import attach_adapter, read_adapter
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.registry import family_of
from magnet_lightning.utils.codec_names import is_stereo, mono_name, stereo_name
from magnet_lightning.utils.provenance import RANDOM_PARTS_KEY, is_random_folder


@dataclass
class Pretrained:
    model: CodebookTransformer
    """MagnetTransformer or ARTransformer (`model.family` says which)."""
    text_encoder: str
    """T5 hub name or local path."""
    codec: str
    """Codec name, path or repo id (see codec.load_codec)."""
    sample_rate: int
    frame_rate: float
    span_len: int
    segment_duration: float
    decoding: dict[str, Any] = field(default_factory=dict)
    """Decoding defaults recorded at training/conversion time."""
    license: str | None = None
    """License of the weights when known (cc-by-nc-4.0 for Meta's released checkpoints)."""
    source: str = ""
    """The file or hub repo the weights came from."""
    random_parts: list[str] = field(default_factory=list)
    """Parts trained or exported with random weights ('codec', 'text_encoder'; `utils.provenance`)."""
    melody: dict[str, Any] | None = None
    """A melody-conditioned model's chroma settings (`config.MelodyConfig` fields), None for a text-only model."""


def recorded_random_parts(raw: dict, codec: str | None) -> list[str]:
    """The parts a checkpoint or export config records as random, plus 'codec' for a marked random codec folder
    (older checkpoints recorded no list)."""
    parts = list(raw.get(RANDOM_PARTS_KEY) or [])
    if "codec" not in parts and is_random_folder(codec):
        parts.insert(0, "codec")
    return parts


def export_codec(folder: Path, config: dict) -> str:
    """The codec an export names: its own copy (a folder inside the export, named relatively) made absolute, or the
    hub id / path recorded."""
    codec = str(config.get("codec"))
    if is_stereo(codec):  # stereo:codec -> stereo:/abs/export/codec
        return stereo_name(export_codec(folder, {**config, "codec": mono_name(codec)}))
    inside = folder / codec
    return str(inside.resolve()) if codec and not Path(codec).is_absolute() and inside.is_dir() else codec


def _from_lightning(raw: dict, path: Path, dtype: str | torch.dtype | None = None,
                    device: str | torch.device | None = None) -> Pretrained:
    hp = raw.get("hyper_parameters") or {}
    if LORA_CHECKPOINT_KEY in raw:
        base = raw[LORA_CHECKPOINT_KEY].get("source")
        raise CheckpointError(f"{path} holds LoRA adapters only: load its base with it (--ckpt {base} --adapter "
                              f"{path}; Python: adapter={str(path)!r})")
    if "model" not in hp:
        raise CheckpointError(f"{path}: a Lightning checkpoint without model hyper-parameters (not ours)")
    cfg = ModelConfig.from_dict(hp["model"])
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in raw["state_dict"].items() if k.startswith(prefix)}
    try:
        model = empty_model(family_of(hp), cfg, hp.get("delays"))
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    model = assign_weights(model, state, dtype, device, source=str(path))
    meta = lightning_metadata(hp)
    return Pretrained(
        model=model.eval(), text_encoder=meta["text_encoder"], codec=meta["codec"], sample_rate=meta["sample_rate"],
        frame_rate=meta["frame_rate"], span_len=meta["span_len"], segment_duration=meta["segment_duration"],
        decoding=meta["decoding"], license=raw.get("license"), source=str(raw.get("converted_from") or path),
        random_parts=recorded_random_parts(raw, meta["codec"]), melody=meta["melody"],
    )


def lightning_metadata(hp: dict) -> dict[str, Any]:
    """What our checkpoint's hyper-parameters say for generation, with the defaults of older checkpoints."""
    model = hp.get("model") or {}
    return {
        "family": family_of(hp),
        "num_codebooks": int(model.get("num_codebooks", 4)),
        "codebook_size": int(model.get("codebook_size", 2048)),
        "text_encoder": hp.get("text_encoder", "t5-base"),
        "codec": hp.get("codec", "facebook/encodec_32khz"),
        "sample_rate": int(hp.get("sample_rate", 32000)),
        "frame_rate": float(hp.get("frame_rate", 50.0)),
        "span_len": int((hp.get("masking") or {}).get("span_len", 3)),
        "segment_duration": float(hp.get("segment_duration", 10.0)),
        "decoding": dict(hp.get("decoding") or {}),
        "melody": hp.get("melody") if (hp.get("model") or {}).get("chroma_bins") else None,
    }


FORMAT, VERSION = "magnet_lightning.pretrained", 1
"""The export folder (written by magnet_lightning.export): config.json of this format and version + safetensors."""
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def is_export(path: str | Path) -> bool:
    """True for an export folder, or its config.json / model.safetensors."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (path.is_dir() or path.name in (CONFIG_NAME, WEIGHTS_NAME)) and (folder / CONFIG_NAME).is_file()


def load_exported(path: str | Path, map_location: str | torch.device = "cpu",
                  dtype: str | torch.dtype | None = None) -> Pretrained:
    """An export folder (or its config.json / model.safetensors) -> Pretrained (eval mode, weights in `dtype`,
    default float32, on `map_location`)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not a magnet_lightning export (format {FORMAT!r}, version "
                              f"{VERSION}); found format {config.get('format')!r}, version {config.get('version')!r}")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: the export folder is incomplete")
    model = empty_model(family_of(config), ModelConfig.from_dict(config["model"]),
                        config.get("delays"))
    model = load_safetensors(weights, model, dtype, map_location)
    codec = export_codec(folder, config)
    return Pretrained(model=model.eval(), text_encoder=config["text_encoder"],
                      codec=codec, sample_rate=int(config["sample_rate"]),
                      frame_rate=float(config["frame_rate"]), span_len=int(config["span_len"]),
                      segment_duration=float(config["segment_duration"]), decoding=dict(config.get("decoding") or {}),
                      license=config.get("license"), source=str(folder),
                      random_parts=recorded_random_parts(config, codec), melody=config.get("melody"))


def load_pretrained(path: str | os.PathLike, map_location: str | torch.device | None = None, *,
                    dtype: str | torch.dtype | None = None, device: str | torch.device | None = None,
                    adapter: str | os.PathLike | None = None) -> Pretrained:
    """Our `.ckpt` (EMA weights when trained with EMA), an audiocraft `state_dict.bin`, or a released hub repo id
    (its state_dict.bin is fetched through the Hugging Face cache), or an export folder (`magnet_lightning.export`)
    -> Pretrained (eval mode), its weights in `dtype` (float32, bfloat16 or float16; default float32) on `device`
    (`map_location` is its older name; default cpu). The file is memory-mapped and the model built without
    initialisation, so only one copy of the weights is ever made (lazy_load.py). `adapter`: a LoRA adapter folder
    or LoRA run checkpoint trained on this base (checked by its weights' hash), merged into the weights (in
    float32, then cast to `dtype`)."""
    if adapter is None:
        return _load_base(path, map_location, dtype=dtype, device=device)
    adapter_read = read_adapter(hub.expand(adapter))  # a missing adapter fails before the base loads
    pretrained = _load_base(path, device="cpu")
    merge_lora(attach_adapter(pretrained.model, adapter_read, str(path)))
    if adapter_read.base.melody:  # the adapter's run added melody conditioning to this text-only base
        pretrained.melody = adapter_read.base.melody["settings"]
    target = torch.float32 if dtype is None else getattr(torch, dtype) if isinstance(dtype, str) else dtype
    pretrained.model.eval().to(device=device or map_location or "cpu", dtype=target)
    pretrained.source = f"{pretrained.source} + LoRA {adapter}"
    return pretrained


def _load_base(path: str | os.PathLike, map_location: str | torch.device | None = None, *,
               dtype: str | torch.dtype | None = None, device: str | torch.device | None = None) -> Pretrained:
    """`load_pretrained` without an adapter."""
    device = device or map_location or "cpu"
    if is_export(hub.expand(path)):
        return load_exported(hub.expand(path), device, dtype)
    source = hub.resolve_lm(path)
    try:
        raw = read_torch_file(source.path)
    except Exception as err:
        raise CheckpointError(f"{source.path} is not a readable torch checkpoint: {err}") from err
    if isinstance(raw, dict) and "best_state" in raw:
        ckpt = read_audiocraft(source, raw=raw)
        meta = ckpt.metadata
        return Pretrained(
            ckpt.build_model(dtype, device), meta["text_encoder"], meta["codec"], meta["sample_rate"],
            meta["frame_rate"], meta["span_len"], meta["segment_duration"], meta["decoding"], meta["license"],
            meta["source"], melody=meta["melody"],
        )
    if isinstance(raw, dict) and "state_dict" in raw:
        return _from_lightning(raw, source.path, dtype, device)
    raise CheckpointError(f"{source.path}: neither a magnet_lightning checkpoint nor an audiocraft state_dict.bin")
