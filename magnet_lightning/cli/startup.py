"""The start-up validation pass of a training run: every mistake that can be found before step 1 is found then.

- `check_training_config` (the CLI, before any class is built): field names of the model / masking / optimizer
  sections, the T5 on disk, shard specs resolving to existing files, each manifest against the model (K, V, frame
  rate, codec, sample rate), the ``init_from`` file.
- At fit start (``MagnetLightningModule.on_fit_start`` and ``AudioMetricsCallback.setup``): the same manifest check
  on the built objects, the T5 loaded, the callback's codec and embedder weights loaded and checked against the
  model and the shards (`callbacks.audio_metrics.check_metrics_codec`).
- `remove_stale_checkpoint_temporaries`: checkpoint temp files of killed writes, removed before training starts.

Each failure is a `UserError` (or FileNotFoundError) naming the field or file and the fix; the CLI prints it as one
line and exits with code 2 (see `magnet_lightning.errors`).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.strategies import StrategyRegistry

from magnet_lightning.checkpoint import hub
from magnet_lightning.checkpoint.pretrained import is_export
from magnet_lightning.cli.melody import check_melody_recipe
from magnet_lightning.config import MaskingConfig, ModelConfig
from magnet_lightning.data.shards import check_compatible, resolve_shards
from magnet_lightning.errors import UserError
from magnet_lightning.generation.plan import decoding_config_for
from magnet_lightning.lora.adapters import LoraConfig
from magnet_lightning.models.conditioning import _missing_weights_error
from magnet_lightning.models.registry import DEFAULT_FAMILY, MODEL_FAMILIES
from magnet_lightning.training.decoding_defaults import DecodingDefaults
from magnet_lightning.training.optim import OptimConfig
from magnet_lightning.training.strategies import STRATEGY_NAME
from magnet_lightning.utils.stale_files import remove_stale


def _plain(value: Any) -> dict:
    """A config section (jsonargparse Namespace, dict, dataclass or None) as a plain dict."""
    if value is None:
        return {}
    if is_dataclass(value):
        return asdict(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return dict(value)


def _section_classes() -> dict[str, type]:
    return {"model": ModelConfig, "masking": MaskingConfig, "optimizer": OptimConfig, "lora": LoraConfig,
            "decoding": DecodingDefaults}


def check_sections(model_config: Any) -> Any:
    """Unknown or invalid fields of model.model / masking / optimizer / lora / decoding -> UserError naming them
    (with the closest known name); the decoding options checked as the model's family declares them. Returns the
    ModelConfig."""
    built = {}
    for section, cls in _section_classes().items():
        value = getattr(model_config, section, None)
        if value is None and section == "lora":  # no adapters: full training
            continue
        values = _plain(value)
        known = [f.name for f in fields(cls)]
        for name in values:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UserError(f"model.{section}.{name}: unknown field{hint}; the fields are {', '.join(known)}")
        try:
            built[section] = cls(**values)
        except (TypeError, ValueError) as err:
            message = str(err) if str(err).startswith(f"model.{section}") else f"model.{section}: {err}"
            raise UserError(message) from None
    check_decoding(str(getattr(model_config, "family", DEFAULT_FAMILY)), built["decoding"].to_dict(), built["model"],
                   float(getattr(model_config, "segment_duration", 10.0)))
    return built["model"]


def check_decoding(family: str, recorded: dict, model: ModelConfig, segment_duration: float) -> None:
    """The decoding options a run records, as its family's generation will read them (generation/plan.py)."""
    if family not in MODEL_FAMILIES:
        raise UserError(f"model.family={family!r}: choose one of {', '.join(MODEL_FAMILIES)}")
    try:
        config = decoding_config_for(family, recorded, span_len=3, segment_duration=segment_duration,
                                     num_codebooks=model.num_codebooks)
        steps = getattr(config, "decoding_steps", None)
        if steps is not None and len(steps) != model.num_codebooks:
            raise ValueError(f"decoding_steps has {len(steps)} entries but the model has {model.num_codebooks} "
                             "codebooks: give one number of decoding steps per codebook")
    except ValueError as err:
        raise UserError(f"model.decoding: {err}") from None


def check_strategy(strategy: Any) -> None:
    """A strategy given by name must be one Lightning knows (registered names, 'auto'); the closest is suggested."""
    if not isinstance(strategy, str):
        return
    known = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in known:
        close = difflib.get_close_matches(strategy, known, n=2)
        close.sort(key=lambda name: name != STRATEGY_NAME)  # this project's sharded strategy first
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        common = [name for name in ("auto", "ddp", "fsdp2", "deepspeed", "single_device") if name in known]
        raise UserError(f"trainer / model / callbacks configuration: --trainer.strategy {strategy}: unknown strategy"
                        f"{hint}; choose one of {', '.join(common)} or another registered name "
                        "(lightning.pytorch.strategies.StrategyRegistry)")


def _specs(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def check_shards(specs: list[str], num_codebooks: int, codebook_size: int, frame_rate: float, codec: str | None,
                 sample_rate: int | None) -> None:
    """Every spec resolves to existing shard files, and every manifest fits the model."""

    for spec in specs:
        shards = resolve_shards(spec)
        if shards.manifest is not None:
            check_compatible(shards.manifest, num_codebooks, codebook_size, frame_rate, where=f"shards {spec!r}",
                             codec=codec, sample_rate=sample_rate)


def text_encoder_on_disk(name: str) -> bool:
    """Whether the T5 `name` (a local folder or a hub name in the HF cache) is there, without loading it."""
    if name.startswith("random:"):
        return True
    folder = Path(name).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file()
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a folder and not a valid hub name
        return False


def check_settings(config: Any) -> None:
    """The settings that need no file, before anything is built or prepared (the demo corpus included): the model's
    sections and recorded decoding options, the strategy, the schedule."""
    check_sections(config.model)
    check_strategy(config.get("trainer", {}).get("strategy"))
    check_schedule(config.model.optimizer, config.get("trainer", {}).get("max_steps"))


def check_training_config(config: Any) -> None:
    """The parsed fit config, before the model, data module, trainer or callbacks are built."""
    model = config.model
    model_cfg = ModelConfig(**_plain(model.model))  # checked by check_settings
    if not model.allow_random_text_encoder and not text_encoder_on_disk(str(model.text_encoder)):

        raise _missing_weights_error(str(model.text_encoder), FileNotFoundError("not in the local cache"))
    data = config.data
    specs = _specs(data.train_shards) + _specs(data.val_shards)
    check_shards(specs, model_cfg.num_codebooks, model_cfg.codebook_size, float(model.frame_rate), model.codec,
                 int(model.sample_rate))
    check_melody_recipe(model_cfg, getattr(model, "melody", None), specs)  # chroma in the shards of a melody model
    if model.init_from and "://" not in str(model.init_from):

        if not is_export(hub.expand(model.init_from)):
            hub.resolve_lm(model.init_from)  # a file, a folder, or a released repo id fetched now: fails here if absent


def check_schedule(optimizer: Any, max_steps: int | None) -> None:
    """A cosine schedule must outlast its warm-up: checked here, before any process group starts."""
    cfg = OptimConfig(**_plain(optimizer))
    total = cfg.total_steps or (max_steps if max_steps and max_steps > 0 else 0)
    if cfg.schedule == "cosine" and total and total <= cfg.warmup_steps:
        raise UserError(f"the cosine schedule's warm-up ({cfg.warmup_steps} steps) is not shorter than training "
                        f"({total} steps, trainer.max_steps / model.optimizer.total_steps): lower "
                        "--model.optimizer.warmup_steps or raise --trainer.max_steps")


def remove_stale_checkpoint_temporaries(trainer: Any) -> list[Path]:
    """On global rank 0: temp files of killed checkpoint writes (``.NAME.tmp<PID>``) in every local checkpoint
    folder; a resumed run starts clean."""

    if not getattr(trainer, "is_global_zero", True):
        return []
    removed = []
    for callback in getattr(trainer, "checkpoint_callbacks", []):
        folder = getattr(callback, "dirpath", None)
        if folder and "://" not in str(folder):
            removed += remove_stale(folder, ".*.tmp*")
    return removed
