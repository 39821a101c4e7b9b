"""What fine-tuning checks beyond the sizes: a base of another codebook layout (stereo vs mono, another delay
pattern) has the same parameter shapes but means something else, and is refused naming the setting to change."""

from __future__ import annotations

from typing import Any

from magnet_lightning.utils.codec_names import is_stereo, layout_label


def check_same_layout(pretrained: Any, model: Any, codec: str, source: str) -> None:
    """`pretrained` (checkpoint.Pretrained) against this run's `model` and `codec` name: the same channels (its
    codec stereo or mono) and the same delay pattern; ValueError naming the setting otherwise."""
    if is_stereo(pretrained.codec) != is_stereo(codec):
        theirs, ours = layout_label(is_stereo(pretrained.codec)), layout_label(is_stereo(codec))
        raise ValueError(f"{source} is a {theirs} model (codec {pretrained.codec!r}) but this run's codec {codec!r} "
                         f"is {ours}: set model.codec to the base's ({pretrained.codec!r})")
    base = getattr(getattr(pretrained.model, "pattern", None), "delays", None)
    run = getattr(getattr(model, "pattern", None), "delays", None)
    if base != run:
        raise ValueError(f"{source}: its delay pattern {list(base or [])} differs from this run's {list(run or [])} "
                         f"(set model.delays to {list(base or [])})")
