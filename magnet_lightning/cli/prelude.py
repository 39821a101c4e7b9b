"""What every command-line entry point does first: `prepare()`, the start-up of utils/startup.py (the hub offline
without a network, known third-party warnings quiet), before transformers or huggingface_hub are imported. Imports
nothing heavy.
"""

from __future__ import annotations

from magnet_lightning.utils.startup import start_up


def prepare() -> None:
    """Call first in every entry point (before transformers / huggingface_hub are imported); once per process."""
    start_up()
