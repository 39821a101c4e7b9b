"""`python -m magnet_lightning.generate` (the same program as `magnet-generate`, see `cli/generate.py`), and the
one-call API: `magnet_lightning.generate(["calm piano"], ckpt=..., seed=0)` (`generation/generator.py`)."""

from __future__ import annotations

import sys
import types

if __name__ == "__main__":
    from magnet_lightning.cli.prelude import prepare  # entry point: before transformers / huggingface_hub load

    prepare()  # the hub probe, known warnings quiet
    from magnet_lightning.cli.generate import main  # entry point: loaded only after prepare()

    sys.exit(main())

from magnet_lightning.generation.generator import GenerationResult, MagnetGenerator, generate  # noqa: E402

__all__ = ["GenerationResult", "MagnetGenerator", "generate"]


class _CallableModule(types.ModuleType):
    """Makes `magnet_lightning.generate(...)` call `generate` although the name is also this module's."""

    def __call__(self, *args, **kwargs) -> GenerationResult:
        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
