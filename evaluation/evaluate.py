#!/usr/bin/env python
"""Evaluate a checkpoint on a prompt set (= `magnet-evaluate`; the program is magnet_lightning/cli/evaluate.py).

    python evaluation/evaluate.py --ckpt model.ckpt --prompts captions.csv --reference wavs/ --out report.json

See evaluation/README.md for the protocol and the embedder weights.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a fresh clone

from magnet_lightning.cli.prelude import prepare

prepare()  # hub offline without network, known third-party warnings quiet: before transformers is imported

from magnet_lightning.cli.evaluate import main  # noqa: E402 (after the path and hub set-up above)

if __name__ == "__main__":
    sys.exit(main())
