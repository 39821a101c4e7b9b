"""What a LoRA run (``model.lora``) changes in training: the base comes from `init_from` and is frozen, its identity
is recorded; checkpoints hold the trainable parameters (adapters, extra trainable ones), their optimiser state and
the base's identity, not the base; loading one checks the base and the adapter layout (one-line errors)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from magnet_lightning.errors import CheckpointError
from magnet_lightning.lora.adapters import LoraConfig, apply_lora, trainable_names
from magnet_lightning.lora.files import CHECKPOINT_KEY, BaseIdentity, base_fingerprint
from magnet_lightning.models.base import CodebookTransformer

PREFIX = "model."
"""The LightningModule's attribute holding the transformer (state_dict keys start with it)."""


def start_lora(model: CodebookTransformer, cfg: LoraConfig, init_from: str | None,
               added_melody: dict | None = None) -> BaseIdentity:
    """Fingerprint the loaded base, freeze it and attach fresh adapters; returns the base's identity (with the
    melody conditioning the run added to it, whose new projection must train: `cfg.extra_trainable`)."""
    if not init_from:
        raise ValueError("model.lora adapts a trained base: set --init_from (a release repo id such as "
                         "facebook/magnet-small-10secs, a state_dict.bin, one of our checkpoints or an export)")
    if added_melody and "chroma_proj" not in cfg.extra_trainable:
        raise ValueError("this run adds melody conditioning to its base: its new projection must train, add "
                         "chroma_proj to model.lora.extra_trainable")
    identity = BaseIdentity(str(init_from), base_fingerprint(model), added_melody)
    apply_lora(model, cfg)
    return identity


def stored_names(model: CodebookTransformer) -> list[str]:
    """The LightningModule state_dict keys a LoRA checkpoint holds."""
    return [PREFIX + name for name in trainable_names(model)]


def keep_adapters_only(checkpoint: dict[str, Any], model: CodebookTransformer, base: BaseIdentity) -> None:
    """on_save_checkpoint: drop the frozen base from the weights (and from the EMA's live copy), add its identity."""
    keys = set(stored_names(model))
    for entry in ("state_dict", "current_model_state"):
        if entry in checkpoint:
            checkpoint[entry] = {k: v for k, v in checkpoint[entry].items() if k in keys}
    checkpoint[CHECKPOINT_KEY] = asdict(base)


def check_checkpoint(checkpoint: dict[str, Any], model: CodebookTransformer, base: BaseIdentity | None) -> None:
    """on_load_checkpoint: a LoRA checkpoint must meet the same base and adapter layout; a full one, no LoRA."""
    stored = checkpoint.get(CHECKPOINT_KEY)
    if base is None:
        if stored is not None:
            raise CheckpointError("this checkpoint holds LoRA adapters only: resume it with the model.lora and "
                                  f"init_from of its run (base {stored['source']})")
        return
    if stored is None:
        raise CheckpointError("this checkpoint holds a full model, not LoRA adapters: resume it without model.lora, "
                              "or start LoRA from it with --init_from")
    BaseIdentity(**stored).check(base.sha256, base.source, "this checkpoint", option="--init_from")
    expected, found = set(stored_names(model)), set(checkpoint["state_dict"])
    if expected != found:
        missing, unexpected = sorted(expected - found)[:2], sorted(found - expected)[:2]
        raise CheckpointError(f"this checkpoint's adapters do not fit model.lora (missing {missing}, unexpected "
                              f"{unexpected}): use the rank/targets of its run")
