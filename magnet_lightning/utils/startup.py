"""What every entry point does first, the command lines' and the Python API's alike (`MagnetGenerator.from_pretrained`
calls it too): `start_up()` sets the Hugging Face libraries offline when the hub cannot be reached (before a model
is looked up, so that a missing file fails at once instead of after minutes of retries) and silences known
third-party warnings that a user can do nothing about (library deprecations inside other libraries, a PaSST
input-size note that is expected for short clips). Warnings from this project, and any other warning, still show.
Imports nothing heavy; runs once per process.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from magnet_lightning.utils.network import HUB_VARIABLES, hub_offline_without_network

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


_started: list[bool] = []


def start_up() -> None:
    """Once per process: the hub offline without a network (also when huggingface_hub was imported before), the
    known warnings quiet."""
    if _started:
        return
    _started.append(True)
    hub_offline_without_network()
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and any(os.environ.get(v) == "1" for v in HUB_VARIABLES):
        hub.HF_HUB_OFFLINE = True  # read at import time; set again for a library imported before this call
    quiet_known_warnings()
