"""W&B set-up of the training command line: offline unless a key is configured and the server answers; the resolved
config stored in the run."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from magnet_lightning.utils.network import endpoint, reachable


def _wandb_host() -> tuple[str, str]:
    """(base URL, host) of the W&B server: WANDB_BASE_URL (a self-hosted server) or api.wandb.ai."""
    base = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    return base, endpoint(base)[0]


def _wandb_key_present(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and host in netrc.read_text(errors="ignore")


def choose_wandb_mode() -> str:
    """Set WANDB_MODE=offline unless the user chose a mode, a key is configured and the W&B server answers (directly
    or through the proxy the proxy variables name)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    base, host = _wandb_host()
    if not _wandb_key_present(host):
        reason = f"no W&B API key (WANDB_API_KEY or a ~/.netrc entry for {host})"
    elif not reachable(base):
        reason = f"{base} is not reachable"
    else:
        return "online"
    os.environ["WANDB_MODE"] = "offline"
    rank_zero_warn(f"W&B runs OFFLINE ({reason}); upload later with `wandb sync <run dir>`.")
    return "offline"


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Writes config.yaml (Lightning's behaviour) and also stores the resolved config in the W&B run."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                config = self.config.clone().as_dict()
                logger.experiment.config.update({"cli": config}, allow_val_change=True)
