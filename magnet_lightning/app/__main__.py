"""`python -m magnet_lightning.app`: the same program as `magnet-app` (`cli/app.py`). A `python -m` form like the
top-level generate.py, and the only module of this layer that reaches up into cli
(tests/package/test_architecture.py)."""

import sys

from magnet_lightning.cli.entrypoints import app

sys.exit(app())
