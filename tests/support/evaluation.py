"""The evaluation tests' constants: the tiny checkpoint's rate and the command-line arguments that pick the
tiny, random-weight embedders (toy CLAP, small VGGish, short PaSST)."""

import json

from support.metric_assets import TINY_VGGISH

RATE = 16000
EMBEDDER_ARGS = ["--clap-embedder", "toy_clap", "--allow-random-embedders", "--embedder-kwargs",
                 json.dumps({"vggish": {"cfg": TINY_VGGISH}, "passt": {"tiny": {"max_seconds": 1.0}}})]
