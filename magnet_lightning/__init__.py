"""magnet_lightning: train, evaluate and serve MAGNeT (arXiv 2401.04577) with PyTorch Lightning.

Public names are imported lazily so that `import magnet_lightning` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "magnet_lightning.config",
    "MaskingConfig": "magnet_lightning.config",
    "model_preset": "magnet_lightning.config",
    "MagnetTransformer": "magnet_lightning.models.magnet",
    "ARTransformer": "magnet_lightning.models.ar",
    "MagnetLightningModule": "magnet_lightning.training.lit_module",
    "TextEncoder": "magnet_lightning.models.conditioning",
    "from_audiocraft": "magnet_lightning.checkpoint.audiocraft",
    "load_pretrained": "magnet_lightning.checkpoint.pretrained",
    "generate": "magnet_lightning.generation.generator",
    "MagnetGenerator": "magnet_lightning.generation.generator",
    "DecodingConfig": "magnet_lightning.generation.magnet_config",
    "ARDecodingConfig": "magnet_lightning.generation.autoregressive",
    "load_codec": "magnet_lightning.codec.codecs",
    "TokenDataModule": "magnet_lightning.data.datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'magnet_lightning' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    # `generate` is both a submodule and the function it defines: return the function.
    return getattr(module, name)
