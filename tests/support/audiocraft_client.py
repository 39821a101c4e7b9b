"""audiocraft itself as the client of our exports: its PyPI release (`pip install --no-deps audiocraft==1.3.0`, done
by .ci/run; omegaconf is a dev dependency) imported with the optional dependencies its import chain names but these
tests never run stubbed out, and a tiny T5 under the name its T5 conditioner loads.

- `import_audiocraft()`: puts stand-ins for the missing modules of `STUBBED` into `sys.modules`, imports
  `audiocraft.models` and returns it with the names it stubbed (`remove_stubs` takes them out again). The stand-ins
  are empty modules whose attributes are placeholder classes (base classes and decorators at import time), except
  `xformers.ops`, whose three functions audiocraft's attention calls: `unbind` (torch.unbind),
  `memory_efficient_attention` (softmax(q kᵀ / sqrt(d) + bias) v on [B, T, H, D], what xformers computes) and
  `LowerTriangularMask` (a causal bias).
- `t5_in_cache(cache, name, width)`: a 1-layer T5 encoder of `width` with a word-level T5 tokenizer, laid out in the
  Hugging Face cache `cache` as repo `name` (t5-base, t5-large), so audiocraft's `T5Conditioner(name)` loads offline.
"""

from __future__ import annotations

import abc
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

STUBBED = ("av", "julius", "xformers", "num2words", "spacy", "flashy", "dora")
"""Modules audiocraft 1.3.0 imports on the way to `audiocraft.models` (audio I/O, text normalisation, its solver
framework, the attention kernel); stubbed only where not installed."""


class _Placeholder(abc.ABCMeta):
    """A class standing for any attribute of a stubbed module: usable as a base class, its own attributes are
    placeholders too, and called on a single function it returns it (a decorator)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {"_placeholder": True})

    def __call__(cls, *args, **kwargs):
        if cls.__dict__.get("_placeholder") and len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return super().__call__(*args, **kwargs)


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package: its absent submodules raise ImportError

    def attribute(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder(attr, (), {"_placeholder": True})

    module.__getattr__ = attribute
    return module


class LowerTriangularMask:
    """xformers' causal attention bias."""


def memory_efficient_attention(q, k, v, attn_bias=None, p=0.0):
    """xformers' attention on [B, T, H, D] inputs: softmax(q kᵀ / sqrt(D) + bias) v."""
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if isinstance(attn_bias, LowerTriangularMask):
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    elif attn_bias is not None:
        scores = scores + attn_bias
    return (scores.softmax(-1) @ v).transpose(1, 2)


def _xformers() -> dict[str, types.ModuleType]:
    root, ops = _module("xformers"), _module("xformers.ops")
    ops.unbind, ops.memory_efficient_attention, ops.LowerTriangularMask = (torch.unbind, memory_efficient_attention,
                                                                           LowerTriangularMask)
    root.ops = ops
    return {"xformers": root, "xformers.ops": ops}


def import_audiocraft():
    """(audiocraft.models, names stubbed); skips the test when audiocraft or omegaconf is not installed."""
    for needed in ("audiocraft", "omegaconf"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed (.ci/run: pip install --no-deps audiocraft==1.3.0; omegaconf is "
                        "in the dev extra)")
    stubbed = []
    for name in STUBBED:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        modules = _xformers() if name == "xformers" else {name: _module(name)}
        sys.modules.update(modules)
        stubbed += list(modules)
    if "flashy" in stubbed:
        sys.modules["flashy.distrib"] = sys.modules["flashy"].distrib = _module("flashy.distrib")
        stubbed.append("flashy.distrib")
    import audiocraft.models

    return audiocraft.models, stubbed


def remove_stubs(stubbed: list[str]) -> None:
    for name in stubbed:
        sys.modules.pop(name, None)


def t5_in_cache(cache: Path, name: str, width: int, tmp: Path) -> Path:
    """A tiny T5 encoder of `width` and a T5 tokenizer (a few words) saved as repo `name` of the HF cache `cache`."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from support.audiocraft_files import hub_cache

    words = ["calm", "piano", "drums", "a", "dog", "barks", "synth", "pop", "rain", "music"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in words]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=width, d_kv=8, d_ff=16, num_layers=1,
                                    num_heads=2))
    folder = tmp / f"t5-{name.replace('/', '-')}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return hub_cache(cache, name, {"model": folder})
