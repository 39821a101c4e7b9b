"""The console scripts of the package (pyproject.toml): ``magnet-train`` (= recipes/train_music.py; ``magnet-train``
alone runs the CPU demo), ``magnet-generate``, ``magnet-tokenize`` (cli/tokenize.py, = data/tokenize_audio.py),
``magnet-evaluate`` (cli/evaluate.py, = evaluation/evaluate.py), ``magnet-convert``, ``magnet-export`` and
``magnet-app`` (the interactive app). Each runs `prelude.prepare()` first. This module imports nothing heavy.
"""

from __future__ import annotations

from magnet_lightning.cli.prelude import prepare


# ------------------------------------------------------------------------------------------------ console scripts
def train() -> None:
    prepare()
    from magnet_lightning.cli.train import main  # entry point: loaded only after prepare()

    main(default_config="demo_music.yaml")


def generate() -> int:
    prepare()
    from magnet_lightning.cli.generate import main  # entry point: loaded only after prepare()

    return main()


def tokenize() -> None:
    prepare()
    from magnet_lightning.cli.tokenize import main  # entry point: loaded only after prepare()

    main()


def evaluate() -> int:
    prepare()
    from magnet_lightning.cli.evaluate import main  # entry point: loaded only after prepare()

    return main()


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
