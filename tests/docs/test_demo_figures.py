"""The demo's figures in README.md and recipes/README.md are the ones evaluation/demo_figures.py measured and wrote to
docs/demo_figures.json: every val/loss, eval-metric and wall-time figure of the demo quoted there equals the file, each
README quotes them, and the file was made with the current demo config."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from support.paths import ROOT

FIGURES = ROOT / "docs" / "demo_figures.json"
DOCS = ["README.md", "recipes/README.md"]
NUMBER = r"(\d+(?:\.\d+)?)"
PATTERNS = {  # what the docs write, and the figures of the file it must show
    "val_loss_line": (rf"val/loss: first {NUMBER} \(step (\d+)\) -> last {NUMBER} \(step (\d+)\) over (\d+) "
                      r"validations",
                      lambda f: [f"{f['val_loss']['first']:.4f}", str(f["val_loss"]["first_step"]),
                                 f"{f['val_loss']['last']:.4f}", str(f["val_loss"]["last_step"]),
                                 str(f["val_loss"]["validations"])]),
    "val_loss_prose": (rf"validation loss falls from {NUMBER} to {NUMBER} over (\d+) validations",
                       lambda f: [f"{f['val_loss']['first']:.4f}", f"{f['val_loss']['last']:.4f}",
                                  str(f["val_loss"]["validations"])]),
    "eval": (rf"final eval metrics: eval/clap {NUMBER}, eval/fad {NUMBER}, eval/kl {NUMBER}",
             lambda f: [f"{f['eval'][k]:.4f}" for k in ("eval/clap", "eval/fad", "eval/kl")]),
    "wall": (rf"demo wall time {NUMBER}–{NUMBER} min", lambda f: [f"{m:g}" for m in f["wall_minutes"]]),
    "load": (rf"at load average {NUMBER}–{NUMBER}", lambda f: [f"{m:g}" for m in f["load_average"]]),
}


@pytest.fixture(scope="module")
def figures() -> dict:
    assert FIGURES.is_file(), "docs/demo_figures.json is missing: run `python evaluation/demo_figures.py`"
    return json.loads(FIGURES.read_text())


def test_the_figures_were_measured_with_the_current_demo_config(figures):
    config = ROOT / "recipes" / "configs" / "demo_music.yaml"
    assert figures["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest(), \
        "recipes/configs/demo_music.yaml changed: run `python evaluation/demo_figures.py` and update the docs"
    assert figures["identical_runs"] == ["fresh", "existing", "one_worker"]


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_quote_the_figures_of_the_file(doc, figures):
    text = re.sub(r"\s+", " ", (ROOT / doc).read_text())
    found = {}
    for name, (pattern, expected) in PATTERNS.items():
        for match in re.finditer(pattern, text):
            assert list(match.groups()) == expected(figures), \
                f"{doc}: {match.group(0)!r} is not docs/demo_figures.json's {expected(figures)}"
            found[name] = True
    assert {"eval", "wall", "load"} <= set(found) and ({"val_loss_line", "val_loss_prose"} & set(found)), \
        f"{doc} quotes only {sorted(found)} of the demo's figures"
