"""Reading weights files as data only: ``torch.load(weights_only=True)``, numpy arrays and scalars allowed.

A file is never unpickled beyond that: one that needs any other Python object (a class, a function, a
``__reduce__`` payload) raises `UnsafeWeightsError` naming it, so no code in a downloaded or dropped-in file can run.
There is no fallback to full unpickling.
"""

from __future__ import annotations

import os
import re

from magnet_lightning.errors import UserError, one_line


class UnsafeWeightsError(UserError):
    """A weights file that holds more than tensors and numpy arrays; refused, never run."""


def _numpy_globals() -> list:
    """What a pickled numpy array or scalar refers to (numpy 1.x and 2.x names); object arrays are not included."""
    import importlib

    import numpy as np

    numpy2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
    multiarray = importlib.import_module("numpy._core.multiarray" if numpy2 else "numpy.core.multiarray")
    dtypes = getattr(np, "dtypes", None)
    classes = [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and n != "ObjectDType"] if dtypes else []
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *classes]


def load_tensors(path: str | os.PathLike, source: str = "its official source") -> object:
    """The contents of a torch file on CPU, read as data only; `source` says where a good copy comes from."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # no Python object asked for: a truncated or foreign file
            raise UserError(f"{path} is not a readable torch weights file (not written by torch.save, or "
                            f"truncated); download it again from {source}.") from None
        raise UnsafeWeightsError(
            f"{path} was refused: it needs the Python object {found.group(1)}, and weights files are only read as "
            "tensors and numpy arrays (torch.load weights_only=True), so no code in it can run. Use the file from "
            f"{source}, or re-save only its tensors with torch.save(state_dict, NEW_PATH) on a machine where you "
            "trust the file, and pass NEW_PATH.") from None
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError) as err:  # a truncated or foreign file
        raise UserError(f"{path} is not a readable torch weights file ({one_line(err)[:200]}); download it again "
                        f"from {source}.") from None
