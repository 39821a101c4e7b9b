"""`python -m magnet_lightning.app`: the same program as `magnet-app` (`cli/app.py`). A `python -m` shim like the
top-level generate.py: the only module of this folder that reaches up into cli."""

import sys

from magnet_lightning.cli.entrypoints import app

sys.exit(app())
