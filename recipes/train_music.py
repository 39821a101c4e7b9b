#!/usr/bin/env python
"""Train text-to-music MAGNeT.

    python recipes/train_music.py                       # CPU demo: synthetic corpus, small model, ~3 min on 2 cores
    python recipes/train_music.py fit --config recipes/configs/music_small_10s.yaml --data.train_shards ...
    python recipes/train_music.py fit --config ... --print_config       # the resolved config
    torchrun --nnodes N --nproc-per-node G recipes/train_music.py fit --config ...   # multi-GPU / multi-node

See recipes/README.md (configs, cluster training, W&B, resuming, fine-tuning).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a fresh clone

from magnet_lightning.cli.prelude import prepare

prepare()  # hub offline without network, known third-party warnings quiet: before transformers is imported

from magnet_lightning.cli.train import main  # noqa: E402 (after the path and hub set-up above)

if __name__ == "__main__":
    main(default_config="demo_music.yaml")
