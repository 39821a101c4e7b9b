"""Other libraries' formats, both ways, each tested with that library as the client: audiocraft's release format
(`audiocraft_release.py`), transformers' MusicGen (`transformers_musicgen.py`) and peft's LoRA adapters
(`peft_adapter.py`); `formats.py` is what `magnet-export --format` and `magnet-convert transformers` call.

Layering: above `codec` (a transformers export carries the codec as an `EncodecModel`), below `generation`.
"""
