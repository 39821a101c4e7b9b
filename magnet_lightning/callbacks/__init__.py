"""Training callbacks: ``AudioMetricsCallback`` (FAD / KL / CLAP of generated audio during training) and
``AudioDemoCallback`` (fixed prompts with a CFG sweep, as audio and spectrograms)."""
from .audio_demo import AudioDemoCallback
from .audio_metrics import AudioMetricsCallback

__all__ = ["AudioDemoCallback", "AudioMetricsCallback"]
