"""What every command-line entry point does first: `prepare()` sets the Hugging Face libraries offline when the hub
cannot be reached (`network`, before transformers or huggingface_hub are imported) and silences known third-party
warnings that a user can do nothing about (library deprecations inside other libraries, a PaSST input-size note that
is expected for short clips). Warnings from this project, and any other warning, still show. Imports nothing heavy.
"""

from __future__ import annotations

import logging
import warnings

from magnet_lightning.utils.network import hub_offline_without_network

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


_prepared = []  # set once per process: a console script that runs a script form probes the hub once, not twice


def prepare() -> None:
    """Call first in every entry point (before transformers / huggingface_hub are imported); once per process."""
    if _prepared:
        return
    _prepared.append(True)
    hub_offline_without_network()
    quiet_known_warnings()
