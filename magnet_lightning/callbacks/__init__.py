"""Training callbacks: ``AudioMetricsCallback`` (FAD / KL / CLAP of generated audio during training)."""
from .audio_metrics import AudioMetricsCallback

__all__ = ["AudioMetricsCallback"]
