"""Small helpers every layer may use: audio files, loudness, network probes, safe tensor loading, output files."""
