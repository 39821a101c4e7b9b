"""Slim inference exports: the generation weights and their settings as safetensors + JSON (Hugging Face layout);
`magnet-export --format magnet_lightning`, the default (the other formats: magnet_lightning/interop/).

    python -m magnet_lightning.export CKPT OUT [--dtype bfloat16] [--license LICENSE] [--push-to-hub REPO] [--force]

CKPT is anything `checkpoint.load_pretrained` reads (a training checkpoint: its EMA weights when trained with EMA;
a converted or audiocraft checkpoint). OUT is a new folder (an existing one is replaced only with `force`):

- ``model.safetensors``: the transformer's weights only (no live copy, optimizer or loop state);
- ``config.json``: ``{"format": "magnet_lightning.pretrained", "version": 1, "model": {ModelConfig},
  "text_encoder", "codec", "sample_rate", "frame_rate", "span_len", "segment_duration", "decoding", "license",
  "source", "random_parts"}``: the T5 is named (a hub id, or a local folder's absolute path); a codec that is a local
  folder is copied into OUT/codec/ (``"codec": "codec"``, read relative to OUT), a hub codec is named by its id, so
  OUT loads from any folder and machine;
- ``README.md``: a model card (checkpoint/model_card.py) whose metadata carries the license, and which says the base
  and what was fine-tuned (also in config.json: ``base``, ``fine_tuned``, ``training``).

With ``--adapter ADAPTER`` (a LoRA adapter folder or a LoRA run's checkpoint trained on CKPT, its base) OUT is the
merged model in the same format; with ``--adapter ADAPTER --adapter-only`` OUT is the adapter folder
(``adapter_config.json`` + ``adapter_model.safetensors``, magnet_lightning.lora.files) after checking it against CKPT.

OUT loads wherever a checkpoint does: ``MagnetGenerator.from_pretrained(OUT)``, ``load_pretrained(OUT)``,
``python -m magnet_lightning.generate --ckpt OUT``, ``--init_from OUT``. Weights converted from audiocraft (or
fine-tuned from them) are CC-BY-NC 4.0, and the export says so; ``--push-to-hub`` uploads OUT to a model repo.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.audiocraft import LICENSE as AUDIOCRAFT_LICENSE
from magnet_lightning.checkpoint.model_card import CardInfo, Origin, model_card, read_origin
from magnet_lightning.checkpoint.pretrained import (
    CONFIG_NAME,
    FORMAT,
    VERSION,
    WEIGHTS_NAME,
    is_export,
    load_pretrained,
)
from magnet_lightning.config import ModelConfig
from magnet_lightning.lora.files import attach_adapter, read_adapter, write_adapter_folder
from magnet_lightning.models.registry import family_of, model_family
from magnet_lightning.utils.codec_names import is_stereo, mono_name, stereo_name
from magnet_lightning.utils.provenance import absolute_if_local, describe_random
from magnet_lightning.utils.staged_folder import check_target, staged_folder

CARD_NAME = "README.md"
EXPORT_CODEC = "codec"  # the folder inside an export that holds a copied local codec
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def choose_license(ckpt: Path, given: str | None, origin: Origin | None = None) -> str:
    """The export's license: CC-BY-NC 4.0 for audiocraft-derived weights, else `given` (or 'unspecified')."""
    origin = origin or read_origin(ckpt)
    if origin.derived:
        if given and given.lower() != AUDIOCRAFT_LICENSE:
            raise ValueError(f"{ckpt} holds weights converted from audiocraft, which are {AUDIOCRAFT_LICENSE}: "
                             f"--license {given} is not allowed")
        return AUDIOCRAFT_LICENSE
    if origin.derived is None and not given:
        raise ValueError(f"{ckpt} comes from {origin.init_from}, whose license this export cannot know: pass "
                         f"--license ({AUDIOCRAFT_LICENSE} if it was a released audiocraft checkpoint)")
    return given or origin.license or "unspecified"


def resolve_checkpoint(ckpt: str | Path) -> Path:
    """An export folder as it is; anything else (a file, a folder holding state_dict.bin, a repo id) resolved."""
    return hub.expand(ckpt) if is_export(hub.expand(ckpt)) else hub.resolve_lm(ckpt).path


def export(ckpt: str | Path, out: str | Path, license: str | None = None, dtype: str = "float32",
           adapter: str | Path | None = None, adapter_only: bool = False, force: bool = False) -> Path:
    """Write the export folder `out` (it must not exist yet, unless `force`) from `ckpt` (with `adapter`: the merged
    model, or with `adapter_only` the adapter folder); returns `out`. Atomic: written under a temporary name next to
    `out`, then renamed."""
    out = hub.expand(out)
    ckpt = resolve_checkpoint(ckpt)
    check_target(out, force)
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose one of {sorted(DTYPES)}")
    if adapter_only:
        if adapter is None:
            raise ValueError("--adapter-only needs --adapter ADAPTER (and CKPT its base, to check it against)")
        read = read_adapter(hub.expand(adapter))
        attach_adapter(load_pretrained(ckpt, device="cpu").model, read, str(ckpt))  # checks the base
        return write_adapter_folder(read, out, force=force)
    origin = read_origin(ckpt, read_adapter(hub.expand(adapter)) if adapter else None)
    chosen = choose_license(ckpt, license, origin)
    pretrained = load_pretrained(ckpt, device="cpu", dtype=DTYPES[dtype], adapter=adapter)
    model = pretrained.model
    config = {"format": FORMAT, "version": VERSION, "family": model.family, "model": asdict(model.cfg),
              "delays": list(model.pattern.delays) if hasattr(model, "pattern") else None,
              "text_encoder": pretrained.text_encoder, "codec": pretrained.codec,
              "sample_rate": pretrained.sample_rate, "frame_rate": pretrained.frame_rate,
              "span_len": pretrained.span_len, "segment_duration": pretrained.segment_duration,
              "decoding": pretrained.decoding, "melody": pretrained.melody, "license": chosen, "dtype": dtype,
              "source": ckpt.name + (f" + LoRA {Path(adapter).name}" if adapter else ""),
              "base": origin.base, "fine_tuned": origin.fine_tuned, "training": origin.training}
    config["random_parts"] = pretrained.random_parts
    with staged_folder(out, force) as tmp:
        config.update(carry_codec(pretrained.codec, tmp), text_encoder=absolute_if_local(pretrained.text_encoder))
        from safetensors.torch import save_file

        state = {k: v.detach().to(DTYPES[dtype]).contiguous() for k, v in pretrained.model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "magnet_lightning": FORMAT})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(slim_card(config, origin))
    return out


def carry_codec(codec: str, folder: Path) -> dict[str, Any]:
    """A local codec folder is copied to FOLDER/codec (the export then names it "codec", or "stereo:codec" for a
    stereo codec of it); a hub id is kept."""
    if is_stereo(codec):
        carried = carry_codec(mono_name(codec), folder)
        return {**carried, "codec": stereo_name(carried["codec"])}
    local = Path(str(codec)).expanduser()
    if not local.is_dir():
        return {"codec": absolute_if_local(codec)}
    shutil.copytree(local, folder / EXPORT_CODEC)
    return {"codec": EXPORT_CODEC, "codec_source": str(local.resolve())}


def describe(config: dict[str, Any]) -> str:
    """One sentence on the model of an export config (sizes, text encoder, codec, rate, segment)."""
    cfg = ModelConfig.from_dict(config["model"])
    return (f"{cfg.num_parameters() / 1e6:.1f} M parameters ({cfg.num_layers} layers x {cfg.dim}), "
            f"{cfg.num_codebooks} codebooks of {cfg.codebook_size}; text encoder `{config['text_encoder']}`, codec "
            f"`{config['codec']}`{_copied(config)} ({config['sample_rate']} Hz); trained on "
            f"{config['segment_duration']:g}-s segments.")


def random_notes(random_parts: list[str]) -> list[str]:
    """The card's warning when parts had random weights (none otherwise)."""
    note = describe_random(random_parts or [])
    return [f"**{note}.** This export shows that training and generation run; it is not a model of music."] \
        if note else []


def slim_card(config: dict[str, Any], origin: Origin) -> str:
    usage = ["from magnet_lightning import MagnetGenerator", "",
             'generator = MagnetGenerator.from_pretrained("PATH_OR_FOLDER")',
             'audio = generator.generate(["calm piano"], duration=10, seed=0).audio']
    return model_card(CardInfo(
        format="magnet_lightning export", library="magnet_lightning",
        family=model_family(family_of(config)).label, license=config["license"], origin=origin,
        summary=describe(config), usage=usage, notes=random_notes(config.get("random_parts") or []),
        tags=("text-to-audio", "magnet", "music-generation")))


def _copied(config: dict[str, Any]) -> str:
    source = config.get("codec_source")
    return f" (this folder's copy of `{source}`)" if source else ""


def push_to_hub(folder: str | Path, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Upload an export folder to the Hugging Face model repo `repo_id` (created if needed); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                      commit_message="Upload magnet_lightning export")
    return str(url)
