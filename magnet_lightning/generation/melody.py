"""The melody condition of one generation (models/melody.py `ChromaCondition`) from melody waveforms, for the
model's fusion:

- 'prepend' (MusicGen-melody): the reference's `generate_with_chroma`. The conditional rows are the chroma of the
  melodies cut or tiled to the segment's frames; the null rows of classifier-free guidance that of silence as long as
  the longest melody (the reference collates [conditional; null] wavs together). A generation past the segment
  (long-form) gives each window the chroma of each melody from the window's start time on, tiled to one segment, as
  the reference's `_generate_tokens` does.
- 'frames' (MAGNeT, Hybrid-MAGNeT): each melody tiled or cut to the output's length (the prompt's frames included:
  the melody starts with the clip), its chroma read at every codec frame; the null rows are the same rows marked
  absent (a zero embedding), as in training. A long-form window takes the rows of its frames.
An absent melody (None) is the null condition in either case.

Shapes: B batch, C channels, N samples, T frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from magnet_lightning.codec.melody import MelodyExtractor, melody_problem, tile, to_model_rate
from magnet_lightning.config import ModelConfig
from magnet_lightning.generation.long_form import plan_windows
from magnet_lightning.models.melody import ChromaCondition, ChromaInput, chroma_at_frames


def as_melody_list(melody: torch.Tensor | Sequence[torch.Tensor | None], batch: int) -> list[torch.Tensor | None]:
    """[C, N] (every item), [B, C, N], or a list of B [C, N] / None -> B entries."""
    if isinstance(melody, torch.Tensor):
        if melody.dim() == 2:
            return [melody] * batch
        if melody.dim() != 3:
            raise ValueError(f"melody must be [C, N], [B, C, N] or a list of [C, N]; got {tuple(melody.shape)}")
        melody = list(melody)
    melodies = list(melody)
    if len(melodies) == 1 and batch > 1:
        melodies = melodies * batch
    if len(melodies) != batch:
        raise ValueError(f"{len(melodies)} melodies for {batch} captions")
    for m in melodies:
        if m is not None and (not isinstance(m, torch.Tensor) or m.dim() != 2):
            raise ValueError("each melody must be a float waveform [C, N] or None")
    return melodies


def check_melodies(melodies: Sequence[torch.Tensor | None], sample_rate: int, extractor: MelodyExtractor) -> None:
    for index, m in enumerate(melodies):
        problem = None if m is None else melody_problem(m, sample_rate, extractor.cfg)
        if problem:
            raise ValueError(f"melody {index}: {problem}")


def _present(melodies: Sequence[torch.Tensor | None]) -> torch.Tensor:
    return torch.tensor([m is not None for m in melodies])


def prefix_condition(extractor: MelodyExtractor, melodies: list, sample_rate: int, frame_rate: float,
                     window_starts: Sequence[int] = ()) -> ChromaCondition:
    """'prepend': the reference's conditional and null prefixes; per long-form window when `window_starts` (frames)
    has more than one entry."""
    cfg = extractor.cfg
    cond = ChromaInput.of(extractor.prefix(extractor.batch_chroma(melodies, sample_rate)))
    longest = max((to_model_rate(m, sample_rate, cfg).shape[-1] for m in melodies if m is not None), default=1)
    silence = torch.zeros(1, longest)
    null = ChromaInput.of(extractor.prefix(extractor.batch_chroma([silence] * len(melodies), cfg.sample_rate)))
    windows = ()
    if len(window_starts) > 1:
        rated = [None if m is None else to_model_rate(m, sample_rate, cfg) for m in melodies]
        target = int(cfg.duration * cfg.sample_rate)
        windows = tuple(ChromaInput.of(extractor.prefix(extractor.batch_chroma(
            [None if m is None else tile(m, int(start / frame_rate * cfg.sample_rate), target) for m in rated],
            cfg.sample_rate))) for start in window_starts)
    return ChromaCondition(cond, null, False, windows)


def frame_condition(extractor: MelodyExtractor, melodies: list, sample_rate: int, num_frames: int,
                    frame_rate: float) -> ChromaCondition:
    """'frames': one chroma row per output frame, each melody tiled or cut to the output's length."""
    cfg = extractor.cfg
    if all(m is None for m in melodies):
        rows = ChromaInput(torch.zeros(len(melodies), num_frames, cfg.n_chroma), _present(melodies))
        return ChromaCondition(rows, rows, True)
    length = int(round(num_frames / frame_rate * cfg.sample_rate))
    tiled = [None if m is None else tile(to_model_rate(m, sample_rate, cfg), 0, length) for m in melodies]
    chroma = extractor.batch_chroma([torch.zeros(1, length) if m is None else m for m in tiled], cfg.sample_rate)
    rows = chroma_at_frames(chroma, num_frames, frame_rate, cfg.chroma_rate)
    cond = ChromaInput.of(rows, _present(melodies))
    return ChromaCondition(cond, cond.dropped(), True)


def melody_condition(extractor: MelodyExtractor, model_cfg: ModelConfig, melody, sample_rate: int, batch: int,
                     num_frames: int, frame_rate: float, window_frames: int | None = None,
                     stride_frames: int | None = None, prompt_frames: int = 0) -> ChromaCondition:
    """The ChromaCondition of a generation of T = num_frames frames (long-form: windows of W frames, stride S, after
    a prompt of Tp frames)."""
    if not model_cfg.chroma_bins:
        raise ValueError("this model has no melody conditioning: it takes no melody")
    if extractor.cfg.n_chroma != model_cfg.chroma_bins:
        raise ValueError(f"the melody extractor gives {extractor.cfg.n_chroma} bins, the model takes "
                         f"{model_cfg.chroma_bins}")
    melodies = as_melody_list(melody, batch)
    check_melodies(melodies, sample_rate, extractor)
    if model_cfg.chroma_fuse == "frames":
        return frame_condition(extractor, melodies, sample_rate, num_frames, frame_rate)
    starts = [] if window_frames is None else [w.start for w in plan_windows(num_frames, window_frames,
                                                                             stride_frames, prompt_frames)]
    return prefix_condition(extractor, melodies, sample_rate, frame_rate, starts)


def null_melody(extractor: MelodyExtractor, model_cfg: ModelConfig, batch: int, num_frames: int,
                frame_rate: float) -> ChromaCondition:
    """A melody model generating without a melody: the reference's 1-sample silence for 'prepend' (its chroma,
    tiled), no chroma (absent rows) for 'frames'."""
    return melody_condition(extractor, model_cfg, [None] * batch, extractor.cfg.sample_rate, batch, num_frames,
                            frame_rate)


def request_melody(generator, request, melody, sample_rate: int | None) -> None:
    """Set `request.melody` (a DecodeRequest of `generator`, a MagnetGenerator) from the user's melody: a melody
    model without one gets the reference's null melody ('prepend') or none ('frames'); a model without melody
    conditioning refuses one. The fast path does not take a melody: the request then runs the plain loop."""
    extractor = generator.melody_extractor
    if extractor is None:
        if melody is not None:
            raise ValueError("this checkpoint has no melody conditioning: it takes no melody (melody-conditioned: "
                             "facebook/musicgen-melody, facebook/musicgen-melody-large, "
                             "facebook/musicgen-stereo-melody(-large), or a model trained or fine-tuned with melody, "
                             "e.g. recipes/configs/finetune_melody_magnet_small.yaml)")
        return
    model_cfg = generator.model.cfg
    if melody is None:
        if model_cfg.chroma_fuse == "frames":
            return
        melody, sample_rate = [None] * request.batch_size, extractor.cfg.sample_rate
    elif sample_rate is None:
        raise ValueError("a melody waveform needs its sample rate (melody_sample_rate)")
    prompt = 0 if request.prompt is None or request.infill is not None else request.prompt.shape[-1]
    request.melody = melody_condition(extractor, model_cfg, melody, sample_rate, request.batch_size,
                                      request.num_frames, generator.frame_rate, request.window_frames,
                                      request.stride_frames, prompt)
    request.fast = None
