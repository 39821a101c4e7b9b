"""The published benchmarks (MusicCaps, Song Describer, AudioCaps) as data: their metadata files, the preparation of
their reference clips, generation and scoring for them, and the model cards' figures to compare with.
See README, "Reproducing the published numbers"."""
from .cards import CARD_FIGURES, card_for
from .formats import BENCHMARKS, Benchmark, get_benchmark, read_rows

__all__ = ["BENCHMARKS", "Benchmark", "CARD_FIGURES", "card_for", "get_benchmark", "read_rows"]
