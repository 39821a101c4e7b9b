"""The console scripts of the package (pyproject.toml): ``magnet-train`` (= recipes/train_music.py; ``magnet-train``
alone runs the CPU demo), ``magnet-generate``, ``magnet-tokenize`` (= data/tokenize_audio.py), ``magnet-evaluate``
(= evaluation/evaluate.py), ``magnet-convert``, ``magnet-export`` and ``magnet-app`` (the interactive app). Each
runs `prelude.prepare()` first. This module imports nothing heavy.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from magnet_lightning.cli.prelude import prepare


# ------------------------------------------------------------------------------------------------ console scripts
def _script(folder: str, name: str) -> Path:
    """A script shipped beside the package: this checkout's folder, or the wheel's copy (pyproject.toml maps the
    repository's recipes/, data/ and evaluation/ into `magnet_lightning.scripts`)."""
    checkout = Path(__file__).resolve().parents[2] / folder / name
    if checkout.is_file():
        return checkout
    return Path(__file__).resolve().parents[1] / "scripts" / folder / name


def _run_script(folder: str, name: str) -> None:
    prepare()
    path = _script(folder, name)
    sys.argv[0] = str(path)
    runpy.run_path(str(path), run_name="__main__")


def train() -> None:
    prepare()
    from magnet_lightning.cli.train import main  # entry point: loaded only after prepare()

    main(default_config="demo_music.yaml")


def generate() -> int:
    prepare()
    from magnet_lightning.cli.generate import main  # entry point: loaded only after prepare()

    return main()


def tokenize() -> None:
    _run_script("data", "tokenize_audio.py")


def evaluate() -> None:
    _run_script("evaluation", "evaluate.py")


def convert() -> None:
    prepare()
    from magnet_lightning.cli.convert import main  # entry point: loaded only after prepare()

    main()


def export() -> int:
    prepare()
    from magnet_lightning.cli.export import main  # entry point: loaded only after prepare()

    return main()


def app() -> int:
    prepare()
    from magnet_lightning.cli.app import main  # entry point: loaded only after prepare()

    return main()
