"""The base's identity and the adapter on disk.

An adapter only means something on the base it was trained on, so it carries that base's identity: where it came
from (a repo id or path) and the SHA-256 of its weights (`base_fingerprint`), checked wherever an adapter meets a
base (resume, generation, export): a different base is a one-line error.

The adapter folder uses peft's layout:

- ``adapter_config.json``: peft's fields (``peft_type`` 'LORA', ``r``, ``lora_alpha``, ``lora_dropout``,
  ``target_modules``, ``modules_to_save``, ``base_model_name_or_path``) and ours under ``magnet_lightning`` (format,
  version, family, the base's SHA-256, the config as given);
- ``adapter_model.safetensors``: the tensors under peft's ``base_model.model.`` prefix, named after this project's
  modules (``...self_attn.in_proj_adapter.q.lora_A.weight``), float32.

`read_adapter` also reads the adapters straight from a LoRA training checkpoint (``last.ckpt``; its EMA weights when
trained with EMA).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from magnet_lightning.errors import CheckpointError
from magnet_lightning.lora.adapters import LoraConfig, apply_lora, is_adapter_name, load_lora_state
from magnet_lightning.models.base import CodebookTransformer
from magnet_lightning.models.registry import add_melody, family_of
from magnet_lightning.utils.staged_folder import staged_folder

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
FORMAT, VERSION = "magnet_lightning.lora", 1
PEFT_PREFIX = "base_model.model."
CHECKPOINT_KEY = "lora_base"
"""Key of a LoRA training checkpoint that holds the base's identity {'source', 'sha256'}."""


@torch.no_grad()
def base_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the base weights (every stored tensor but the adapters, as float32, in name order, names and
    shapes included): equal for the same weights wherever they were loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if is_adapter_name(name):
            continue
        value = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(value.shape)};".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


@dataclass
class BaseIdentity:
    source: str
    """The base's repo id or path, as given to init_from / --ckpt."""
    sha256: str
    """`base_fingerprint` of its weights (with the added melody projection, zero, when `melody` is set)."""
    melody: dict | None = None
    """Melody conditioning the adapter's run added to a text-only base: {'model': the ModelConfig fields that add
    it (chroma_bins, chroma_fuse), 'settings': the chroma settings (config.MelodyConfig fields)}; None otherwise."""

    def check(self, actual_sha256: str, actual_source: str, what: str, option: str = "--ckpt") -> None:
        """Raise CheckpointError (one line) when `actual_sha256` is another base's; the fix names `option`, where the
        base is given (``--ckpt`` when generating or exporting, ``--init_from`` when training)."""
        if actual_sha256 != self.sha256:
            raise CheckpointError(f"{what} was trained on the base {self.source} (weights sha256 {self.sha256[:12]}),"
                                  f" not on {actual_source} (sha256 {actual_sha256[:12]}): pass that base "
                                  f"({option} {self.source})")


@dataclass
class Adapter:
    """An adapter as read from disk."""

    config: LoraConfig
    state: dict[str, torch.Tensor]
    """{parameter name in the model: tensor}: the adapters and the extra trainable parameters."""
    base: BaseIdentity
    family: str
    source: str


def adapter_config(adapter: Adapter) -> dict:
    """adapter_config.json of this project's adapter folder."""
    cfg = adapter.config
    return {"peft_type": "LORA", "task_type": None, "r": cfg.rank, "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout, "target_modules": cfg.expanded_targets(),
            "modules_to_save": cfg.extra_trainable or None, "bias": "none", "fan_in_fan_out": False,
            "inference_mode": True, "base_model_name_or_path": adapter.base.source,
            "magnet_lightning": {"format": FORMAT, "version": VERSION, "family": adapter.family,
                                 "base_sha256": adapter.base.sha256, "lora": asdict(cfg),
                                 **({"base_melody": adapter.base.melody} if adapter.base.melody else {})}}


def write_adapter_folder(adapter: Adapter, out: str | Path, force: bool = False) -> Path:
    """Write `out` (a new folder; replaced only with `force`) with adapter_config.json + adapter_model.safetensors,
    readable as the umask allows; atomic (temporary name, then rename). Returns `out`."""
    out = Path(out).expanduser()
    with staged_folder(out, force, "an adapter") as tmp:
        state = {PEFT_PREFIX + k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state.items()}
        save_file(state, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(adapter_config(adapter), indent=2) + "\n")
    return out


def _read_folder(folder: Path) -> Adapter:
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    ours = config.get("magnet_lightning") or {}
    if ours.get("format") != FORMAT or ours.get("version") != VERSION:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: not a magnet_lightning LoRA adapter (format {FORMAT!r} "
                              f"version {VERSION} expected, found {ours.get('format')!r} {ours.get('version')!r})")
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: the adapter folder is incomplete")
    state = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in load_file(str(weights)).items()}
    base = BaseIdentity(config["base_model_name_or_path"], ours["base_sha256"], ours.get("base_melody"))
    return Adapter(LoraConfig(**ours["lora"]), state, base, ours["family"], str(folder))


def _read_checkpoint(path: Path) -> Adapter:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
    hp = raw.get("hyper_parameters") or {} if isinstance(raw, dict) else {}
    if not hp.get("lora") or CHECKPOINT_KEY not in raw:
        raise CheckpointError(f"{path} is not a LoRA adapter: pass an adapter folder ({ADAPTER_CONFIG}) or the "
                              "checkpoint of a run trained with model.lora")
    state = {k[len("model."):]: v for k, v in raw["state_dict"].items() if k.startswith("model.")}
    base = raw[CHECKPOINT_KEY]
    return Adapter(LoraConfig(**hp["lora"]), state, BaseIdentity(base["source"], base["sha256"], base.get("melody")),
                   family_of(hp), str(path))


def read_adapter(path: str | os.PathLike) -> Adapter:
    """An adapter folder (or its adapter_config.json) or a LoRA run's checkpoint -> Adapter."""
    path = Path(path).expanduser()
    if path.is_dir() or path.name == ADAPTER_CONFIG:
        folder = path if path.is_dir() else path.parent
        if not (folder / ADAPTER_CONFIG).is_file():
            raise FileNotFoundError(f"{folder / ADAPTER_CONFIG} not found: {folder} is not an adapter folder")
        return _read_folder(folder)
    if not path.is_file():
        raise FileNotFoundError(f"adapter {path} not found (an adapter folder or a LoRA run's .ckpt)")
    return _read_checkpoint(path)


def attach_adapter(model: CodebookTransformer, adapter: Adapter, base_source: str) -> CodebookTransformer:
    """Check that `model` is the adapter's base (family and weights), then attach the adapter (in place). An adapter
    trained with melody conditioning added gives a text-only base its (zero) chroma projection first."""
    if model.family != adapter.family:
        raise CheckpointError(f"adapter {adapter.source} is for the {adapter.family} family, the base {base_source} "
                              f"is a {model.family} model")
    if adapter.base.melody and not model.cfg.chroma_bins:
        add_melody(model, **adapter.base.melody["model"])
    adapter.base.check(base_fingerprint(model), base_source, f"adapter {adapter.source}")
    apply_lora(model, adapter.config)
    try:
        load_lora_state(model, {k: v.to(next(model.parameters()).device) for k, v in adapter.state.items()},
                        adapter.source)
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    return model
