"""The peers' own metric code as test oracles: kadtk's `kad.py` and fadtk's `fad.py` from their PyPI packages.

Both packages are test-only dependencies installed with ``pip install --no-deps kadtk==1.1.0 fadtk==1.1.0`` (see
.ci/run): the metric functions need only numpy, scipy and torch, but the packages' ``__init__`` import embedding
models and helpers (hypy_utils, librosa models, downloads). Here the two metric modules are loaded from the installed
files with those imports stubbed, inside a pytest ``monkeypatch`` so nothing leaks into other tests.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types

import pytest


def _stub(monkeypatch, name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def _package(monkeypatch, name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"{name} is not installed: pip install --no-deps kadtk==1.1.0 fadtk==1.1.0 (a test-only oracle)")
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    monkeypatch.setitem(sys.modules, name, package)


def load_oracle(monkeypatch, which: str) -> types.ModuleType:
    """kadtk.kad (``which="kadtk"``) or fadtk.fad (``which="fadtk"``), with their heavy imports stubbed."""
    def identity(fn, items, *a, **k):
        return [fn(i) for i in items]

    _stub(monkeypatch, "hypy_utils", write=lambda *a, **k: None)
    _stub(monkeypatch, "hypy_utils.tqdm_utils", tmap=identity, pmap=identity, tq=lambda items, *a, **k: items)
    _stub(monkeypatch, "hypy_utils.logging_utils", setup_logger=lambda *a, **k: logging.getLogger(which))
    _package(monkeypatch, which)
    if which == "kadtk":
        _stub(monkeypatch, "kadtk.emb_loader", EmbeddingLoader=object)
        _stub(monkeypatch, "kadtk.model_loader", ModelLoader=object)
        monkeypatch.delitem(sys.modules, "kadtk.kad", raising=False)
        return importlib.import_module("kadtk.kad")
    _stub(monkeypatch, "fadtk.model_loader", ModelLoader=object)
    _stub(monkeypatch, "hypy_utils.nlp_utils", substr_between=lambda *a, **k: "")
    monkeypatch.delitem(sys.modules, "fadtk.utils", raising=False)
    monkeypatch.delitem(sys.modules, "fadtk.fad", raising=False)
    return importlib.import_module("fadtk.fad")
