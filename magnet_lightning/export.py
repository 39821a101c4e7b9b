"""`python -m magnet_lightning.export` (the same program as `magnet-export`, see `cli/export.py`); the export itself
is `checkpoint/export.py`."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from magnet_lightning.cli.prelude import prepare

    prepare()  # before transformers / huggingface_hub load: the hub probe, known warnings quiet
    from magnet_lightning.cli.export import main  # after prepare(), on purpose

    sys.exit(main())
else:
    from magnet_lightning.checkpoint.export import export, push_to_hub

    __all__ = ["export", "push_to_hub"]
