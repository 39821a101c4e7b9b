"""Evaluation embedders, pluggable by name: ``get_embedder("vggish" | "clap" | "passt" |
"passt_embedding" | "codec", **kwargs)`` (``passt_embedding``: PaSST's 768-d features, for FAD / KAD).

Each loader finds real weights on local disk and fails with a message naming the file, its URL and where to put
it. Heavy libraries (laion_clap, hear21passt) are imported only when that embedder is built (inside its loader).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magnet_lightning.errors import UserError

from .base import AudioEmbedder, EmbedderHolder, to_mono_at
from .clap import load_clap
from .codec_latents import load_codec_embedder
from .passt import load_passt
from .vggish import load_vggish
from .weights import WEIGHTS_DIR_ENV, resolve_weights, weights_dir

_LOADERS: dict[str, Callable[..., AudioEmbedder]] = {}


class UnknownEmbedderError(UserError, KeyError):
    """An embedder name that is not registered (a typo in a config or a flag)."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_embedder(name: str, loader: Callable[..., AudioEmbedder]) -> None:
    """Make ``get_embedder(name, **kwargs)`` call ``loader(**kwargs)``."""
    _LOADERS[name] = loader


def available_embedders() -> list[str]:
    return sorted(_LOADERS)


def get_embedder(name: str, **kwargs: Any) -> AudioEmbedder:
    """Build the embedder registered as ``name`` (see each loader for its arguments)."""
    if name not in _LOADERS:
        raise UnknownEmbedderError(f"Unknown embedder {name!r}; available: {available_embedders()}.")
    return _LOADERS[name](**kwargs)


def _passt_embedding(**kwargs: Any) -> AudioEmbedder:
    return load_passt(output="embedding", **kwargs)


for _name, _loader in (("vggish", load_vggish), ("clap", load_clap), ("passt", load_passt),
                      ("passt_embedding", _passt_embedding), ("codec", load_codec_embedder)):
    register_embedder(_name, _loader)

__all__ = ["AudioEmbedder", "EmbedderHolder", "WEIGHTS_DIR_ENV", "available_embedders", "get_embedder",
           "register_embedder", "resolve_weights", "to_mono_at", "weights_dir"]
