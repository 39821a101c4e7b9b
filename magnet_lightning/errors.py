"""User mistakes: one line naming the problem and the fix, exit code 2, no traceback.

Every entry point (training recipes, ``generate``, ``convert``, ``data/tokenize_audio.py``,
``evaluation/evaluate.py``) runs inside :func:`user_errors`. A :class:`UserError`, a ``FileNotFoundError`` (missing
input, weights or shards) or one of the extra types an entry point names is printed as ``error: <message>`` on one
line of stderr and the process exits with code 2. ``--debug`` on the command line or ``MAGNET_DEBUG=1`` lets the
exception through with its full traceback instead. Anything else is a bug and always shows its traceback.

This module imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

DEBUG_ENV = "MAGNET_DEBUG"
DEBUG_FLAG = "--debug"
EXIT_CODE = 2


class UserError(Exception):
    """A mistake in the user's arguments, config or files; its message names the problem and the fix."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (wrong format, another model's weights, a refused setting), with the
    reason."""


class UserExit(SystemExit):
    """Exit code 2 that still carries the one-line message (``str(exit)``) for in-process callers and tests."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


def one_line(err: BaseException | str) -> str:
    """The message on one line (newlines and runs of spaces collapsed)."""
    return " ".join(str(err).split())


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pop_debug_flag(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--debug``; when it was there, set ``MAGNET_DEBUG=1`` (inherited by DDP child ranks)."""
    args = list(argv)
    if DEBUG_FLAG in args:
        args = [a for a in args if a != DEBUG_FLAG]
        os.environ[DEBUG_ENV] = "1"
    return args


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn UserError, FileNotFoundError and ``extra`` exceptions into ``error: <one line>`` + exit code 2."""
    try:
        yield
    except (UserError, FileNotFoundError, *extra) as err:
        if debug_enabled():
            raise
        message = one_line(err)
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise UserExit(message) from None
