"""The figures each released checkpoint's model card publishes, to put beside a run's own.

Sources: audiocraft's ``model_cards/MAGNET_MODEL_CARD.md`` and ``MUSICGEN_MODEL_CARD.md`` ("Quantitative analysis":
MusicCaps for the music models, AudioCaps for audio-MAGNeT); FAD on VGGish, KL on PaSST, CLAP text consistency. The
released checkpoints were trained on 16K hours of licensed music with vocals removed, not the paper's models.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CardFigures:
    benchmark: str
    fad: float
    kl: float
    clap: float | None
    source: str


_MAGNET = "audiocraft model_cards/MAGNET_MODEL_CARD.md"
_MUSICGEN = "audiocraft model_cards/MUSICGEN_MODEL_CARD.md"
CARD_FIGURES: dict[str, CardFigures] = {
    "facebook/magnet-small-10secs": CardFigures("musiccaps", 4.22, 1.11, 0.28, _MAGNET),
    "facebook/magnet-medium-10secs": CardFigures("musiccaps", 4.61, 1.14, 0.28, _MAGNET),
    "facebook/magnet-small-30secs": CardFigures("musiccaps", 4.35, 1.17, 0.28, _MAGNET),
    "facebook/magnet-medium-30secs": CardFigures("musiccaps", 4.63, 1.20, 0.28, _MAGNET),
    "facebook/audio-magnet-small": CardFigures("audiocaps", 3.21, 1.42, None, _MAGNET),
    "facebook/audio-magnet-medium": CardFigures("audiocaps", 2.32, 1.64, None, _MAGNET),
    "facebook/musicgen-small": CardFigures("musiccaps", 4.88, 1.42, 0.27, _MUSICGEN),
    "facebook/musicgen-medium": CardFigures("musiccaps", 5.14, 1.38, 0.28, _MUSICGEN),
    "facebook/musicgen-large": CardFigures("musiccaps", 5.48, 1.37, 0.28, _MUSICGEN),
}


def card_for(release_id: str | None, benchmark: str) -> tuple[str, CardFigures] | None:
    """(id, figures) when ``release_id`` is a released checkpoint whose card reports ``benchmark``."""
    if release_id is None:
        return None
    key = release_id.strip().rstrip("/")
    figures = CARD_FIGURES.get(key) or CARD_FIGURES.get(f"facebook/{key}")
    if figures is None or figures.benchmark != benchmark:
        return None
    return (key if key in CARD_FIGURES else f"facebook/{key}"), figures
