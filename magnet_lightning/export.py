"""`python -m magnet_lightning.export` (the same program as `magnet-export`, see `cli/export.py`); the export itself
is `checkpoint/export.py`."""

from __future__ import annotations

if __name__ == "__main__":
    from magnet_lightning.cli.prelude import prepare  # entry point: before transformers / huggingface_hub load

    prepare()  # the hub probe, known warnings quiet
    from magnet_lightning.cli.export import main  # entry point: loaded only after prepare()

    raise SystemExit(main())

from magnet_lightning.checkpoint.export import export, push_to_hub  # noqa: E402

__all__ = ["export", "push_to_hub"]
