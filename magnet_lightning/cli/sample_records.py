"""What a generated sample's ``manifest.jsonl`` record says about how it was generated beyond the decoding options
(cli/generate.py adds these fields): the LoRA adapter applied to the checkpoint, and the long-form plan (the window,
the stride and how many windows a clip past the checkpoint's segment took), so that samples of a base and of
base + adapter, or of two strides, can be told apart from the manifest alone."""

from __future__ import annotations

from typing import Any

from magnet_lightning.utils.provenance import absolute_if_local


def sample_fields(args: Any, gen: Any, num_frames: int) -> dict[str, Any]:
    """``adapter`` (absolute when local, None without) and ``long_form`` (None within one window, else ``windows``,
    ``window_seconds``, ``stride_seconds``) of a clip of `num_frames` frames from generator `gen`."""
    plan = gen.long_form(num_frames, args.extend_stride) if num_frames > gen.num_frames(gen.segment_duration) \
        else None
    long_form = None if plan is None else {
        "windows": plan.windows, "window_seconds": plan.window_frames / gen.frame_rate,
        "stride_seconds": plan.stride_frames / gen.frame_rate}
    return {"adapter": absolute_if_local(args.adapter) if args.adapter else None, "long_form": long_form}
