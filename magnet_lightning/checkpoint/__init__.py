"""Checkpoint formats: our Lightning checkpoints and exports (`pretrained`, `export`), audiocraft's release files and
their `xp.cfg` (`audiocraft`, `audiocraft_config`), and released models by Hugging Face repo id (`hub`)."""
