"""`--help` of the argparse programs: the program's name as it was started, and each default said once.

- `program_name`: ``magnet-export`` when started as that console script, else ``python -m magnet_lightning.export``.
- `OneLineParser`: an ArgumentParser whose mistakes are one ``error: ...`` line (exit 2), the usage only with --help.
- `DefaultsOnce`: argparse's ArgumentDefaultsHelpFormatter, except that a help text which already says its default
  (``(default: the checkpoint's)``) gets no second one, and None / False defaults are not printed.

Imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magnet_lightning.errors import UserExit, one_line


def program_name(module: str) -> str:
    """The console script's name (``magnet-...``) when that started the process, else ``python -m MODULE``."""
    started = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return started if started.startswith("magnet-") else f"python -m {module}"


class DefaultsOnce(argparse.RawDescriptionHelpFormatter):
    """Adds ``(default: X)`` to a help text that names no default itself; None and False defaults stay unsaid."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or \
                action.option_strings == [] or action.nargs == 0 and action.default is True:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a mistake prints one line, ``error: PROG: message (see PROG --help)``, and exits 2."""

    def error(self, message: str):
        text = one_line(f"{self.prog}: {message} (see {self.prog} --help)")
        print(f"error: {text}", file=sys.stderr, flush=True)
        raise UserExit(text)
