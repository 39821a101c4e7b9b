"""The command-line programs (each console script and its start-up checks).

The training CLI's classes were once defined in a flat `magnet_lightning/cli.py`, and run folders written then name
them as `magnet_lightning.cli.<Class>` in their saved `config.yaml`: those names resolve here, lazily, so that
`--ckpt_path last` on such a folder keeps working. Importing this package loads nothing heavy (the console scripts
must run `prelude.prepare()` before torch and transformers load).
"""

from __future__ import annotations

import importlib
from typing import Any

_ALIASES = {  # name -> module that defines it now
    "MagnetCLI": "magnet_lightning.cli.train",
    "main": "magnet_lightning.cli.train",
    "AtomicCheckpointIO": "magnet_lightning.training.checkpoint_io",
    "GradNormMonitor": "magnet_lightning.callbacks.monitors",
    "ValLossHistory": "magnet_lightning.callbacks.monitors",
    "MagnetFSDPStrategy": "magnet_lightning.training.strategies",
    "LoggedSaveConfigCallback": "magnet_lightning.cli.wandb_setup",
    "StrictArgumentParser": "magnet_lightning.cli.parser",
}


def __getattr__(name: str) -> Any:
    if name not in _ALIASES:
        raise AttributeError(f"module 'magnet_lightning.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(_ALIASES[name]), name)
