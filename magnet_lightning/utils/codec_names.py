"""Codec names that say how audio channels become codebooks (torch-free: shard manifests, checkpoints and start-up
checks read them before anything heavy loads).

A stereo codec of this project is audiocraft's `InterleaveStereoCompressionModel`: a mono codec applied to the left
and to the right channel, the codebooks interleaved per channel (codebook 2k is the left channel's k, 2k + 1 the
right channel's k). Its name is the mono codec's with the prefix ``stereo:``, e.g. ``stereo:facebook/encodec_32khz``,
wherever a codec is named: `codec.load_codec`, ``--codec`` of the tokenizer, a checkpoint's ``codec``, a shard
manifest's ``codec`` (``stereo:hf-encodec:facebook/encodec_32khz``).
"""

from __future__ import annotations

STEREO_PREFIX = "stereo:"


def is_stereo(name: str | None) -> bool:
    """The codec `name` interleaves a stereo pair of mono codecs."""
    return str(name or "").strip().startswith(STEREO_PREFIX)


def mono_name(name: str) -> str:
    """The mono codec inside a stereo codec name (the name itself when it is not stereo)."""
    name = str(name).strip()
    return name[len(STEREO_PREFIX):] if name.startswith(STEREO_PREFIX) else name


def stereo_name(name: str) -> str:
    """The stereo codec made of the mono codec `name` (unchanged when it already is one)."""
    return name if is_stereo(name) else STEREO_PREFIX + str(name).strip()


def layout_label(stereo: bool) -> str:
    """'stereo' or 'mono', for messages."""
    return "stereo" if stereo else "mono"
