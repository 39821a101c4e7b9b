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

from magnet_lightning.generation.common import ProgressFn

WindowFn = Callable[[torch.Tensor | None, "Window", ProgressFn | None], torch.Tensor]
"""window(prompt long [B, K, P] or None, window, progress) -> long [B, K, window.length], the prompt in front."""


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


@dataclass(frozen=True)
class LongFormDefaults:
    """What long-form generation a family takes by default (declared per family in generation/families.py)."""

    stride_fraction: float
    """The default stride as a fraction of the window (the checkpoint's segment)."""
    why: str = ""
    """Where the default comes from (the reference, or the measurement that chose it)."""

    def stride_seconds(self, segment_duration: float) -> float:
        return self.stride_fraction * segment_duration


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

        tokens = window(prompt, w, None if progress is None else report)
        pieces.append(tokens[..., w.prompt:])
        if on_window is not None:
            on_window(w, tokens)
        done += steps[w.index] if steps is not None else window_total[0]
        prompt = tokens[..., stride_frames:]
    return torch.cat(pieces, dim=-1)


def leading_prompt(fixed: torch.Tensor) -> int | None:
    """Frames fixed [B, T] or [B, K, T] -> Tp when exactly the first Tp frames are fixed (in every row and stage: a
    continuation prompt), else None (other constraints, e.g. infilling)."""
    per_frame = fixed.reshape(-1, fixed.shape[-1]) if fixed.dim() == 3 else fixed
    all_fixed, any_fixed = per_frame.all(dim=0), per_frame.any(dim=0)  # [T]
    prompt = int(all_fixed.long().cumprod(0).sum())
    return prompt if not bool(any_fixed[prompt:].any()) else None


def infill_window(fixed: torch.Tensor, window_frames: int) -> int:
    """The first frame of a window of W frames holding every free (not fixed) frame of fixed [B, T] / [B, K, T],
    the free region centred in its context where the clip allows; ValueError when the region is longer than W."""
    free = ~(fixed.reshape(-1, fixed.shape[-1]) if fixed.dim() == 3 else fixed).all(dim=0)  # [T]
    frames = free.nonzero()[:, 0]
    if frames.numel() == 0:
        return 0
    first, last = int(frames[0]), int(frames[-1]) + 1
    if last - first > window_frames:
        raise ValueError(f"the region to regenerate spans {last - first} frames, more than one window "
                         f"({window_frames} frames): infill at most one window at a time")
    return infill_window_start(first, last, window_frames, fixed.shape[-1])


def infill_window_start(first: int, last: int, window_frames: int, num_frames: int) -> int:
    """The first frame of the window of W frames that decodes the free frames [first, last) of a clip of T
    frames: the region centred in its context where the clip allows."""
    start = first - (window_frames - (last - first)) // 2
    return max(0, min(start, num_frames - window_frames))


def decode_windows(
    decode: Callable[..., torch.Tensor],
    num_frames: int,
    window_frames: int | None,
    stride_frames: int | None,
    mask_id: int,
    *,
    given: torch.Tensor | None = None,
    fixed: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    on_window: Callable[[Window, torch.Tensor], None] | None = None,
    melody=None,
) -> torch.Tensor:
    """Long-form decoding with a decoder of the given/fixed constraints contract (MAGNeT's plain or fast decoder,
    `decode(num_frames, given=, fixed=, progress=)` -> [B, K, T]; with a melody (models.melody.ChromaCondition) also
    `melody=` the window's part of it).

    No constraints, or a prompt (the first Tp frames fixed): window by window (`extend`), each window a continuation
    of the previous window's tail (its frames fixed, never re-decoded). Other constraints (infilling) on T > W: the
    free frames are decoded in one window of W frames around them, the rest kept; more than W free frames is an error.
    """
    check_windows(num_frames, window_frames, stride_frames)

    def part(w: Window) -> dict:
        return {} if melody is None else {"melody": melody.window(w.index, w.start, w.length)}

    prompt = None
    if fixed is not None:
        prompt_frames = leading_prompt(fixed)
        if num_frames > window_frames and prompt_frames is None:
            start = infill_window(fixed, window_frames)
            frames = slice(start, start + window_frames)
            tokens = decode(window_frames, given=given[..., frames], fixed=fixed[..., frames], progress=progress,
                            **part(Window(0, start, window_frames, 0)))
            out = given.clone()
            out[..., frames] = tokens
            return out
        if prompt_frames is None:
            return decode(num_frames, given=given, fixed=fixed, progress=progress, **part(Window(0, 0, num_frames, 0)))
        prompt = given[..., :prompt_frames]

    def window(window_prompt: torch.Tensor | None, w: Window, window_progress: ProgressFn | None) -> torch.Tensor:
        frames = w.length
        if window_prompt is None:
            return decode(frames, given=None, fixed=None, progress=window_progress, **part(w))
        batch, codebooks, prompt_len = window_prompt.shape
        window_given = torch.full((batch, codebooks, frames), mask_id, dtype=torch.long, device=window_prompt.device)
        window_given[..., :prompt_len] = window_prompt
        window_fixed = torch.zeros(batch, frames, dtype=torch.bool, device=window_prompt.device)
        window_fixed[:, :prompt_len] = True
        return decode(frames, given=window_given, fixed=window_fixed, progress=window_progress, **part(w))

    return extend(window, num_frames, window_frames, stride_frames, prompt, progress=progress, on_window=on_window)
