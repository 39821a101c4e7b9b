"""Music text augmentation for training captions (magnet_spec.md section 2).

With probability `merge_text_p` the track's metadata (key, bpm, genre, moods, instrument, keywords) is turned into
``"field: value"`` phrases, each kept with probability ``1 - drop_other_p``, shuffled, and joined; the caption is then
replaced by those phrases with probability `drop_desc_p`, otherwise they are appended to it. Train split only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MUSIC_FIELDS = ("key", "bpm", "genre", "moods", "instrument", "keywords")


@dataclass(frozen=True)
class TextAugmentConfig:
    merge_text_p: float = 0.25  # chance to add metadata phrases to the caption
    drop_desc_p: float = 0.5  # when merging: chance to drop the original caption
    drop_other_p: float = 0.5  # when merging: chance to drop each metadata field

    def __post_init__(self):
        for name in ("merge_text_p", "drop_desc_p", "drop_other_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")


def _field_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v).strip() for v in value if str(v).strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def metadata_phrases(metadata: dict, rng: random.Random, drop_other_p: float) -> list[str]:
    """``["genre: rock", "bpm: 120", ...]`` from the known, non-empty music fields, randomly thinned and shuffled."""
    phrases = []
    for name in MUSIC_FIELDS:
        text = _field_text(metadata.get(name)) if metadata.get(name) is not None else ""
        if text and rng.random() >= drop_other_p:
            phrases.append(f"{name}: {text}")
    rng.shuffle(phrases)
    return phrases


def augment_music_text(caption: str, metadata: dict, rng: random.Random, cfg: TextAugmentConfig) -> str:
    """Return the (possibly) augmented caption for one training sample."""
    if rng.random() >= cfg.merge_text_p:
        return caption
    phrases = metadata_phrases(metadata, rng, cfg.drop_other_p)
    if not phrases:
        return caption
    merged = ", ".join(phrases)
    if not caption or rng.random() < cfg.drop_desc_p:
        return merged
    return f"{caption.rstrip(' .')}. {merged}"
