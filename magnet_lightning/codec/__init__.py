"""Audio codecs that turn waveforms into RVQ token ids and back (`codecs`), audiocraft's 16 kHz EnCodec rebuilt from
its release file (`audiocraft`), and fitting a random codec's codebooks to audio for the demo (`fit`)."""
