"""Temporary files left by killed writes, removed at the next start.

Writers here stage a file as ``NAME.tmp<PID>`` (or ``NAME.tmp``) next to its target and rename it into place, so a
killed writer leaves only such a file behind: never a half-written target. `remove_stale` deletes them unless the
process named by the PID is still running on this machine (a concurrent writer).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)
_TMP_SUFFIX = re.compile(r"\.tmp(\d*)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(folder: str | Path, pattern: str) -> list[Path]:
    """Delete the files of `folder` matching the glob `pattern` whose name ends in ``.tmp<PID>`` of a process that
    no longer runs (or in ``.tmp``); returns what was removed. Each removal is logged."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(pattern)):
        match = _TMP_SUFFIX.search(path.name)
        if match is None or not path.is_file():
            continue
        if match.group(1) and _alive(int(match.group(1))):
            log.info("keeping %s: its writer (pid %s) is still running", path, match.group(1))
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
        log.warning("removed %s, left by an interrupted write", path)
    return removed
