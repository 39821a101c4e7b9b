"""Finding embedder weight files on local disk, with an error that says what to download and where to put it."""
from __future__ import annotations

import os
from pathlib import Path

from magnet_lightning.utils.safe_load import load_tensors

WEIGHTS_DIR_ENV = "MAGNET_WEIGHTS_DIR"


def weights_dir() -> Path:
    """Directory searched for embedder weights: ``$MAGNET_WEIGHTS_DIR`` or ``~/.cache/magnet_lightning/weights``."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "magnet_lightning" / "weights"


def resolve_weights(explicit: str | os.PathLike | None, env_var: str, filename: str, url: str,
                    extra_dirs: tuple[Path, ...] = ()) -> Path:
    """Return the first existing file among: ``explicit``, ``$env_var``, ``weights_dir()/filename``,
    ``extra_dirs/filename``. Raises FileNotFoundError naming the file, its download URL and the places searched.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit).expanduser())
    elif os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]).expanduser())
    else:
        candidates += [weights_dir() / filename] + [Path(d) / filename for d in extra_dirs]
    for path in candidates:
        if path.is_file():
            return path
    searched = "\n  ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"Weights file {filename!r} not found. Searched:\n  {searched}\n"
        f"Download it from {url}\n"
        f"and either put it in {weights_dir()} (set ${WEIGHTS_DIR_ENV} to change that folder), "
        f"point ${env_var} at it, or pass its path explicitly.")


def load_checkpoint(path: str | os.PathLike) -> object:
    """An embedder weights file as data only (tensors, numpy arrays); see `magnet_lightning.utils.safe_load`."""
    return load_tensors(path, source="its release URL in evaluation/README.md")
