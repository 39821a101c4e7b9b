"""Recipe configs built without weights: `build_recipe` parses and instantiates a recipe like `magnet-train fit`
without building the trainer, `meta_models` (a fixture, pytest plugin) builds the transformers on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from magnet_lightning.cli.run_record import RunRecorder
from magnet_lightning.cli.train import MagnetCLI


class BuildOnlyCLI(MagnetCLI):
    """Parses and instantiates model, datamodule, callbacks and loggers; keeps the trainer arguments unbuilt
    (GPU accelerators do not exist on a CPU test machine)."""

    def instantiate_trainer(self, **kwargs):
        self.trainer_kwargs = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        self.recorder = RunRecorder(self.run_dir)  # what before_fit fills (the trainer's callback in a real run)


@pytest.fixture
def meta_models(monkeypatch):
    """Transformers built on the meta device (shapes and parameter counts, no memory for 1.8B weights)."""
    from magnet_lightning.training import lit_module

    real = lit_module.build_model

    def on_meta(family, cfg, delays=None):
        with torch.device("meta"):
            return real(family, cfg, delays)

    monkeypatch.setattr(lit_module, "build_model", on_meta)


def build_recipe(config: Path, *extra: str) -> BuildOnlyCLI:
    # run=False: no subcommand, cli.config is the fit config itself
    return BuildOnlyCLI(args=["--config", str(config), *extra], run=False)
