"""magnet_lightning: train, evaluate and serve MAGNeT with PyTorch Lightning."""

__version__ = "0.1.0"
