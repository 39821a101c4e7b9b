#!/usr/bin/env python
"""Tokenize audio + captions into EnCodec WebDataset shards (= `magnet-tokenize`; the program is
magnet_lightning/cli/tokenize.py; see data/README.md).

    python data/tokenize_audio.py --input /data/music --output /data/tokens/music --codec facebook/encodec_32khz
    torchrun --nproc-per-node 8 data/tokenize_audio.py --input ... --output ...
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a fresh clone

from magnet_lightning.cli.prelude import prepare

prepare()  # hub offline without network, known third-party warnings quiet: before transformers is imported

from magnet_lightning.cli.tokenize import main  # noqa: E402 (after the path and hub set-up above)

if __name__ == "__main__":
    main()
