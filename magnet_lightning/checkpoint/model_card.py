"""Where an export's weights come from, and the model card (README.md) every export format writes.

`read_origin(ckpt, adapter)` says, from the checkpoint's own records: whether the weights descend from Meta's
audiocraft release (their license is then CC-BY-NC 4.0), the base they start from, what was fine-tuned, and the
training settings an audiocraft config records (text and guidance dropout). `model_card(CardInfo)` writes the card:
Hugging Face metadata (license, library, base model) and a table of format, family, base, license and what was
fine-tuned, then how to load the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from magnet_lightning.checkpoint.audiocraft import LICENSE as AUDIOCRAFT_LICENSE
from magnet_lightning.checkpoint.audiocraft_config import lookup, read_xp_cfg
from magnet_lightning.checkpoint.pretrained import CONFIG_NAME, is_export
from magnet_lightning.lora.files import Adapter


@dataclass
class Origin:
    derived: bool | None
    """The weights descend from audiocraft's release: True / False / None (unknown: fine-tuned from elsewhere)."""
    base: str
    """What the weights start from (a repo id or path), or a phrase when nothing ('random initialisation')."""
    fine_tuned: str
    """What training changed, in words."""
    init_from: str | None = None
    training: dict[str, float] = field(default_factory=dict)
    """cfg_dropout and word_dropout where the checkpoint records them."""
    license: str | None = None
    """The license the checkpoint records (a converted transformers repo's model card), if any."""


def _read_raw(ckpt: Path) -> dict:
    try:  # tensors on the meta device: only the metadata is read
        return torch.load(ckpt, map_location="meta", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
        return torch.load(ckpt, map_location="cpu", weights_only=True)


def _checkpoint_origin(ckpt: Path) -> Origin:
    if is_export(ckpt):
        config = json.loads(((ckpt if ckpt.is_dir() else ckpt.parent) / CONFIG_NAME).read_text())
        return Origin(config.get("license") == AUDIOCRAFT_LICENSE, str(config.get("base") or config.get("source")),
                      str(config.get("fine_tuned") or "not recorded (an export of an earlier version)"),
                      training=dict(config.get("training") or {}))
    raw = _read_raw(ckpt)
    if "best_state" in raw:
        cfg = read_xp_cfg(raw["xp.cfg"])
        training = {"cfg_dropout": float(lookup(cfg, "classifier_free_guidance.training_dropout", 0.0)),
                    "word_dropout": float(lookup(cfg, "conditioners.description.t5.word_dropout", 0.0))}
        return Origin(True, str(ckpt), "nothing: audiocraft's weights as released", training=training)
    hp = raw.get("hyper_parameters") or {}
    training = {k: float(hp[k]) for k in ("cfg_dropout", "word_dropout") if k in hp}
    if raw.get("converted_from") and raw.get("converted_format"):  # another library's model, its license recorded
        recorded = raw.get("license")
        derived = True if recorded == AUDIOCRAFT_LICENSE else (False if recorded else None)
        return Origin(derived, str(raw["converted_from"]), f"nothing: converted from {raw['converted_format']}",
                      str(raw["converted_from"]), training, recorded)
    if raw.get("converted_from"):
        return Origin(True, str(raw["converted_from"]), "nothing: audiocraft's weights, converted",
                      training=training)
    init_from = hp.get("init_from")
    if init_from:
        return Origin(None, str(init_from), "every weight (full fine-tuning)", str(init_from), training)
    return Origin(False, "none", "every weight, trained from random initialisation", training=training)


def read_origin(ckpt: Path, adapter: Adapter | None = None) -> Origin:
    """The origin of `ckpt`'s weights (an export folder, our checkpoint or an audiocraft file), with `adapter`
    (LoRA trained on it) described as what was fine-tuned."""
    origin = _checkpoint_origin(ckpt)
    if adapter is not None:
        cfg = adapter.config
        extra = f", and fully {', '.join(cfg.extra_trainable)}" if cfg.extra_trainable else ""
        origin.fine_tuned = (f"LoRA adapters (rank {cfg.rank}, alpha {cfg.alpha:g}) on "
                             f"{', '.join(cfg.expanded_targets())}{extra}; the base frozen")
        origin.base = adapter.base.source
    return origin


@dataclass
class CardInfo:
    format: str
    """The folder's format, in words ("audiocraft's release format")."""
    library: str
    """Hugging Face `library_name` ('magnet_lightning', 'audiocraft', 'transformers', 'peft')."""
    family: str
    """The family's label ('MAGNeT', 'autoregressive', 'Hybrid-MAGNeT')."""
    license: str
    origin: Origin
    summary: str
    """One sentence on the model (sizes, text encoder, codec, sample rate)."""
    usage: list[str]
    """A Python snippet that loads the folder."""
    notes: list[str] = field(default_factory=list)
    tags: tuple[str, ...] = ("text-to-audio", "music-generation")


def model_card(info: CardInfo) -> str:
    """README.md of an export folder."""
    license_id = info.license if info.license != "unspecified" else "other"
    lines = ["---", f"license: {license_id}", f"library_name: {info.library}"]
    if "/" in info.origin.base and not info.origin.base.startswith(("/", ".", "~")):
        lines.append(f"base_model: {info.origin.base}")
    lines += [f"tags: [{', '.join(info.tags)}]", "---", "", f"# {info.family} model ({info.format})", "",
              "| format | family | base | license | fine-tuned |", "|---|---|---|---|---|",
              f"| {info.format} | {info.family} | `{info.origin.base}` | {info.license} | {info.origin.fine_tuned} |",
              "", info.summary, "", "```python", *info.usage, "```", ""]
    for note in info.notes:
        lines += [note, ""]
    if info.license == AUDIOCRAFT_LICENSE:
        lines += ["The weights derive from Meta's audiocraft release and are licensed CC-BY-NC 4.0 (non-commercial "
                  "use only).", ""]
    return "\n".join(lines)
