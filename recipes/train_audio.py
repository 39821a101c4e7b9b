#!/usr/bin/env python
"""Train text-to-audio MAGNeT (sound effects): t5-large conditioning, 16 kHz EnCodec, AdamW + inverse-sqrt.

    python recipes/train_audio.py fit --config recipes/configs/audio_small.yaml --data.train_shards ...
    python recipes/train_audio.py                       # with no arguments: the CPU demo (music corpus)

See recipes/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a fresh clone

from magnet_lightning.cli.prelude import prepare

prepare()  # hub offline without network, known third-party warnings quiet: before transformers is imported

from magnet_lightning.cli.train import main  # noqa: E402 (after the path and hub set-up above)

if __name__ == "__main__":
    main(default_config="demo_music.yaml")
