"""What every command-line entry point does first, and the console scripts of the package (pyproject.toml).

`prepare()`: set the Hugging Face libraries offline when the hub cannot be reached (`network`, before transformers
or huggingface_hub are imported) and silence known third-party warnings that a user can do nothing about (library
deprecations inside other libraries, a PaSST input-size note that is expected for short clips). Warnings from this
project, and any other warning, still show.

Console scripts: ``magnet-train`` (= recipes/train_music.py; ``magnet-train`` alone runs the CPU demo),
``magnet-generate``, ``magnet-tokenize`` (= data/tokenize_audio.py), ``magnet-evaluate`` (= evaluation/evaluate.py),
``magnet-convert`` and ``magnet-export``. This module imports nothing heavy.
"""

from __future__ import annotations

import logging
import runpy
import sys
import warnings
from pathlib import Path

KNOWN_WARNINGS = (  # (message regex, category): raised inside third-party code, not actionable by a user
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated.*", Warning),  # lightning's pytree use, newer torch
    (r"Importing from timm\.models\.layers is deprecated.*", FutureWarning),  # hear21passt importing timm
    (r"torch\.meshgrid: in an upcoming release.*", UserWarning),  # timm / PaSST
    (r"stft with return_complex=False is deprecated.*", UserWarning),  # hear21passt's front end
    (r".*torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated.*", FutureWarning),  # hear21passt
    (r"Input image size \(\d+\*\d+\) doesn't match model.*", UserWarning),  # PaSST on clips shorter than 20 s
    (r".*flex_attention called without torch\.compile.*", UserWarning),  # eager FlexAttention on CUDA
    (r".*does not have many workers which may be a bottleneck.*", Warning),  # a CPU demo's num_workers: 0
)
_TIPS = ("💡 Tip:",)  # Lightning's advertisements for its cloud services


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_TIPS)


def quiet_known_warnings() -> None:
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())


def prepare() -> None:
    """Call first in every entry point (before transformers / huggingface_hub are imported)."""
    from magnet_lightning.network import hub_offline_without_network

    hub_offline_without_network()
    quiet_known_warnings()


# ------------------------------------------------------------------------------------------------ console scripts
def _script(folder: str, name: str) -> Path:
    """A script shipped beside the package: this checkout's folder, or the wheel's copy (pyproject.toml maps the
    repository's recipes/, data/ and evaluation/ into `magnet_lightning.scripts`)."""
    checkout = Path(__file__).resolve().parent.parent / folder / name
    if checkout.is_file():
        return checkout
    return Path(__file__).resolve().parent / "scripts" / folder / name


def _run_script(folder: str, name: str) -> None:
    prepare()
    path = _script(folder, name)
    sys.argv[0] = str(path)
    runpy.run_path(str(path), run_name="__main__")


def train() -> None:
    prepare()
    from magnet_lightning.cli import main

    main(default_config="demo_music.yaml")


def generate() -> int:
    prepare()
    from magnet_lightning.generate import main

    return main()


def tokenize() -> None:
    _run_script("data", "tokenize_audio.py")


def evaluate() -> None:
    _run_script("evaluation", "evaluate.py")


def convert() -> None:
    prepare()
    from magnet_lightning.convert import main

    main()


def export() -> int:
    prepare()
    from magnet_lightning.export import main

    return main()
