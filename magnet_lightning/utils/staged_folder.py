"""Output folders written whole or not at all, readable like any other file.

`staged_folder(out)` yields a temporary folder next to `out` (``.NAME.tmp<PID>``); when the block ends without an
error every file in it is made readable as the umask allows (safetensors and some writers create 0600 files; an
export is meant to be shared) and the folder is renamed to `out`. An existing `out` is an error unless `force`, and is
then replaced in one rename (the old folder is moved aside first and deleted last). A failed block leaves nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def shareable(folder: Path) -> None:
    """Give every file under `folder` mode 0666 and every folder 0777, less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(root) / name, 0o666 & ~umask)


def check_target(out: Path, force: bool, what: str = "an export") -> None:
    """Refuse an existing `out` unless `force` (one line naming the fix); a file is never replaced by a folder."""
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists: choose a new folder, or pass --force to replace it ({what} is never "
                              "written over another silently)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder: choose a new folder")


@contextmanager
def staged_folder(out: str | os.PathLike, force: bool = False, what: str = "an export") -> Iterator[Path]:
    """A temporary folder that becomes `out` (see the module docstring); `check_target` runs first."""
    out = Path(out)
    check_target(out, force, what)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shareable(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
