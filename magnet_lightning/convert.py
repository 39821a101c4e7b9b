"""`python -m magnet_lightning.convert` (the same program as `magnet-convert`, see `cli/convert.py`); the import
functions themselves are in `checkpoint/audiocraft.py`."""

from __future__ import annotations

if __name__ == "__main__":
    from magnet_lightning.cli.prelude import prepare  # entry point: before transformers / huggingface_hub load

    prepare()  # the hub probe, known warnings quiet
    from magnet_lightning.cli.convert import main  # entry point: loaded only after prepare()

    raise SystemExit(main())

from magnet_lightning.checkpoint.audiocraft import convert_audiocraft, from_audiocraft, read_audiocraft  # noqa: E402

__all__ = ["convert_audiocraft", "from_audiocraft", "read_audiocraft"]
