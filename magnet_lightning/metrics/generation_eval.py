"""The generate -> decode -> loudness -> metrics loop over an evaluation set, one slice per rank.

Work split: the items are cut into global batches of ``batch_size`` (batch b = items [b·bs, (b+1)·bs)), batch b
goes to rank b mod W, and every rank makes exactly ceil(num_batches / W) generate calls — a rank with fewer real
batches generates a throw-away batch — so no rank reaches the metrics' collective ``compute()`` early. Batch b is
seeded with ``seed + b·bs`` (the global index of its first item; with ``batch_size=1`` every item has its own seed
``seed + index``), so the audio does not depend on the number of ranks.

Per batch: duration = the longest reference in it (capped at ``max_duration``), or ``default_duration`` without
references; each generated clip is then cut / zero-padded to its reference's length and loudness-normalised
(``lufs``, default −14 LUFS; references untouched, resampled to the codec's rate). Shapes: C channels, L samples.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from magnet_lightning.utils.audio import read_audio
from magnet_lightning.utils.loudness import loudness_normalize

from .eval_set import EvalItem
from .suite import AudioEvalSuite

logger = logging.getLogger(__name__)


@dataclass
class Example:
    """One evaluated item, kept for logging (audio on CPU at ``sample_rate``)."""

    key: str
    text: str
    generated: Tensor
    reference: Tensor | None
    sample_rate: int
    clap: float | None
    seed: int


def rank_batches(num_items: int, batch_size: int, rank: int, world_size: int) -> tuple[list[int], int]:
    """(global batch ids of this rank, generate calls every rank makes)."""
    total = math.ceil(num_items / batch_size)
    return list(range(rank, total, world_size)), math.ceil(total / world_size)


def match_length(wav: Tensor, length: int) -> Tensor:
    """[C, L] -> [C, length]: cut, or zero-padded at the end."""
    if wav.shape[-1] >= length:
        return wav[..., :length]
    return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))


class ReferenceLoader:
    """Reference audio [C, L] at the codec's rate for an item: its file (read, resampled) or its codes decoded.
    Decoded / read clips are cached on CPU (``cache=True``), since the same set is evaluated again and again."""

    def __init__(self, codec: Any, cache: bool = True) -> None:
        self.codec = codec
        self.cache: dict[str, Tensor] | None = {} if cache else None

    def __call__(self, item: EvalItem) -> Tensor | None:
        if self.cache is not None and item.key in self.cache:
            return self.cache[item.key]
        if item.path is not None:
            wav, rate = read_audio(item.path)
            if rate != self.codec.sample_rate:
                import torchaudio

                wav = torchaudio.functional.resample(wav, rate, int(self.codec.sample_rate))
        elif item.codes is not None:
            with torch.no_grad():
                wav = self.codec.decode(item.codes[None].to(self.codec.device))[0].float().cpu()
        else:
            return None
        if self.cache is not None:
            self.cache[item.key] = wav
        return wav


def evaluate_items(generator: Any, suite: AudioEvalSuite, items: Sequence[EvalItem], *, rank: int = 0,
                   world_size: int = 1, batch_size: int = 8, seed: int = 0, max_duration: float | None = None,
                   default_duration: float | None = None, decoding: Any = None, lufs: float | None = -14.0,
                   references: ReferenceLoader | None = None, keep_examples: int = 0, min_calls: int = 0,
                   progress: Callable[[int], None] | None = None,
                   extend_stride: float | None = None, melody: bool = False,
                   chroma: Any = None) -> list[Example]:
    """Generate this rank's batches and update ``suite``; returns up to ``keep_examples`` examples.

    ``generator``: a MagnetGenerator (``.generate(texts, duration=, seed=, decoding=)``, ``.sample_rate``,
    ``.frame_rate``); ``decoding``: DecodingConfig fields to override (dict) — its steps bound the cost.
    ``progress(n)`` is called with the decoding steps done since the last call. ``min_calls``: make at least this
    many generate calls (when the ranks hold different item lists, pass the largest call count of all ranks).
    ``extend_stride``: the stride of long-form generation (durations past the checkpoint's segment; None: the
    family's default). ``melody`` (melody-conditioned checkpoints): each item is generated with its reference clip as
    its melody, as audiocraft's MusicGen solver evaluates (an item without a reference gets none); ``chroma``: a
    ``ChromaCosineSimilarity`` updated with each generated clip against its reference (items with one).
    """
    if not items and min_calls == 0:
        raise ValueError("the evaluation set is empty")
    references = references or ReferenceLoader(generator.codec)
    mine, calls = rank_batches(len(items), batch_size, rank, world_size)
    rate = int(generator.sample_rate)
    examples: list[Example] = []
    options = {**dict(decoding or {}), **({} if extend_stride is None else {"extend_stride": extend_stride})}
    for call in range(max(calls, min_calls)):
        real = call < len(mine)
        b = mine[call] if real else 0
        if not real:  # throw-away batch: keeps every rank's generate-call count equal
            generator.generate([""] * batch_size, duration=default_duration or max_duration, seed=seed,
                               decode_audio=False, progress=_stepper(progress), **options)
            continue
        batch = list(items[b * batch_size:(b + 1) * batch_size])
        refs = [references(item) for item in batch]
        if max_duration is not None:
            refs = [None if r is None else r[..., : int(max_duration * rate)] for r in refs]
        duration = _batch_duration(refs, rate, max_duration, default_duration)
        batch_seed = seed + b * batch_size
        tunes = {"melody": list(refs), "melody_sample_rate": rate} if melody else {}
        result = generator.generate([item.text for item in batch], duration=duration, seed=batch_seed,
                                    progress=_stepper(progress), **options, **tunes)
        generated = []
        for wav, ref in zip(result.audio.float().cpu(), refs):
            wav = match_length(wav, ref.shape[-1]) if ref is not None else wav
            generated.append(loudness_normalize(wav, rate, lufs) if lufs is not None else wav)
        scores = suite.update(generated, refs, [item.text for item in batch], rate,
                              keys=[item.key for item in batch])
        if chroma is not None:
            update_chroma(chroma, generated, refs, rate)
        for item, wav, ref, score in zip(batch, generated, refs, scores):
            if len(examples) < keep_examples:
                examples.append(Example(item.key, item.text, wav, ref, rate, score, batch_seed))
    return examples


def update_chroma(chroma: Any, generated: Sequence[Tensor], refs: Sequence[Tensor | None], rate: int) -> None:
    """Update a ``ChromaCosineSimilarity`` with the clips [C, L_i] that have a reference [C', L_i] (cut to it): both
    zero-padded to the longest, with each item's real length, as audiocraft's evaluation batches them."""
    pairs = [(g.mean(0, keepdim=True), r.mean(0, keepdim=True)) for g, r in zip(generated, refs) if r is not None]
    if not pairs:
        return
    longest = max(r.shape[-1] for _, r in pairs)
    preds = torch.stack([match_length(g, longest) for g, _ in pairs])
    targets = torch.stack([match_length(r, longest) for _, r in pairs])
    chroma.update(preds, targets, torch.tensor([r.shape[-1] for _, r in pairs]), rate)


def _stepper(progress: Callable[[int], None] | None) -> Callable[[int, int], None] | None:
    """Turn decode's cumulative ``(done, total)`` reports into increments for ``progress``."""
    if progress is None:
        return None
    done = [0]

    def step(count: int, total: int) -> None:
        progress(count - done[0])
        done[0] = count

    return step


def _batch_duration(refs: list[Tensor | None], rate: int, max_duration: float | None,
                    default_duration: float | None) -> float | None:
    lengths = [r.shape[-1] for r in refs if r is not None]
    duration = max(lengths) / rate if lengths else default_duration
    if duration is not None and max_duration is not None:
        duration = min(duration, max_duration)
    return duration
