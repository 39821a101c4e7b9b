"""Long-form generation by windowed extension, for every family (audiocraft `GenModel._generate_tokens`, in frames).

A generation of T frames longer than the window W (at most the checkpoint's training segment) runs in windows: window
i covers frames [i*S, i*S + min(T - i*S, W)) for the stride S (1 <= S < W); its first frames are given, the rest
generated. The first window's given frames are the user prompt (none without one); every later window's are the last
`W - S` frames of the window before it (its frames from S on). Only each window's new frames are kept, so the overlap
is never regenerated, and windows are added while the previous one ends before T: the output has exactly T frames,
the user prompt in front (the reference's `remove_prompts=False`). A generation of T <= W frames is one window, the
plain decoder call.

This module holds the arithmetic and the loop, for any decoder given as a window function; each family's decoder
takes `window_frames` / `stride_frames` and passes itself in (MAGNeT: `magnet.decode` through `decode_windows`,
which also places an infill region in one window; autoregressive: `autoregressive.generate`; Hybrid-MAGNeT:
`hybrid_magnet.generate`). One progress callback covers every window.

Shapes: B batch, K codebooks, T frames, P given (prompt) frames of a window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

ProgressFn = Callable[[int, int], None]
"""progress(done_steps, total_steps)."""
WindowFn = Callable[[torch.Tensor | None, int, ProgressFn | None], torch.Tensor]
"""window(prompt long [B, K, P] or None, num_frames, progress) -> long [B, K, num_frames], the prompt in front."""


@dataclass(frozen=True)
class Window:
    """One window of a long-form generation: frames [start, start + length) of the output, the first `prompt` of
    them given (the user prompt, or the previous window's tail)."""

    index: int
    start: int
    length: int
    prompt: int

    @property
    def end(self) -> int:
        return self.start + self.length


def check_windows(num_frames: int, window_frames: int | None, stride_frames: int | None,
                  prompt_frames: int = 0) -> None:
    """Raise ValueError unless the windowing is possible: 1 <= S < W, and a prompt the first window can continue."""
    if window_frames is None or stride_frames is None:
        raise ValueError("long-form generation needs both window_frames and stride_frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if window_frames < 1 or not 1 <= stride_frames < window_frames:
        raise ValueError(f"the stride ({stride_frames} frames) must be at least 1 and shorter than the window "
                         f"({window_frames} frames)")
    if prompt_frames > num_frames:
        raise ValueError(f"the prompt has {prompt_frames} frames, more than the {num_frames} to generate")
    if num_frames > window_frames and prompt_frames >= window_frames:
        raise ValueError(f"the prompt has {prompt_frames} frames, not shorter than one window ({window_frames} "
                         f"frames): shorten the prompt")


def plan_windows(num_frames: int, window_frames: int, stride_frames: int, prompt_frames: int = 0) -> list[Window]:
    """The windows of a generation of T = num_frames frames (the reference's loop: window i starts at i * S)."""
    check_windows(num_frames, window_frames, stride_frames, prompt_frames)
    if num_frames <= window_frames:
        return [Window(0, 0, num_frames, prompt_frames)]
    windows: list[Window] = []
    start, prompt = 0, prompt_frames
    while start + prompt < num_frames:  # the window before ends before T (the user prompt, at first)
        window = Window(len(windows), start, min(num_frames - start, window_frames), prompt)
        windows.append(window)
        start, prompt = start + stride_frames, window.length - stride_frames
    return windows


def num_windows(num_frames: int, window_frames: int, stride_frames: int) -> int:
    """How many windows a generation of T frames takes (1 when T <= W)."""
    return 1 if num_frames <= window_frames else 1 + math.ceil((num_frames - window_frames) / stride_frames)


def extend(
    window: WindowFn,
    num_frames: int,
    window_frames: int,
    stride_frames: int,
    prompt: torch.Tensor | None = None,
    *,
    window_steps: Callable[[Window], int] | None = None,
    progress: ProgressFn | None = None,
    on_window: Callable[[Window, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Generate T = num_frames frames window by window with `window` (one decoder call per window).

    Args:
        window: the decoder of one window (WindowFn).
        prompt: long [B, K, Tp] user prompt (Tp < W when T > W), or None.
        window_steps: the model steps of a window (for one progress bar over all windows); default: every window
            counts as many steps as the one being decoded reports.
        progress: progress(done, total) over the whole generation.
        on_window: on_window(window, tokens [B, K, length]) after each window (inspection, tests).
    Returns:
        long [B, K, T]: the prompt, then every window's new frames.
    """
    windows = plan_windows(num_frames, window_frames, stride_frames, 0 if prompt is None else prompt.shape[-1])
    steps = None if window_steps is None else [window_steps(w) for w in windows]
    pieces = [] if prompt is None or windows[0].prompt == 0 else [prompt]
    done, window_total = 0, [0]
    for w in windows:
        def report(step: int, total: int, w: Window = w) -> None:
            window_total[0] = total
            grand = sum(steps) if steps is not None else done + total * (len(windows) - w.index)
            progress(done + step, grand)

        tokens = window(prompt, w.length, None if progress is None else report)
        pieces.append(tokens[..., w.prompt:])
        if on_window is not None:
            on_window(w, tokens)
        done += steps[w.index] if steps is not None else window_total[0]
        prompt = tokens[..., stride_frames:]
    return torch.cat(pieces, dim=-1)
