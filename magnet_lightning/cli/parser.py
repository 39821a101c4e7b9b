"""Strict parsing of the training command line: no abbreviated options, and an unknown key's error names the valid
keys (and the closest match)."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from magnet_lightning.errors import UserExit, debug_enabled, one_line

_UNKNOWN = re.compile(r"unrecognized arguments: (--[\w.]+)|[Kk]ey '([\w.]+)' is not expected|"
                      r"does not accept nested key '([\w.]+)'|does not accept option '([\w.]+)'")


class StrictArgumentParser(LightningArgumentParser):
    """LightningArgumentParser without abbreviated options, whose unknown-key errors name the valid keys.

    With abbreviations (argparse's default) ``--trainer.max_step`` silently means ``--trainer.max_steps``, and
    ``--model.optimizer.lr`` would be matched by ``--model.optimizer.l``. A user error exits with code 2 and a short
    message, ``error: ...`` on one line of stderr (the usage is for ``--help``), never a traceback; ``--debug``
    raises jsonargparse's error instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or debug_enabled():  # jsonargparse trying a union's alternatives, or --debug
            return super().error(message, ex)
        message = one_line(explain_unknown_key(self, message))
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise UserExit(message)


def option_names(parser) -> list[str]:
    """Every dotted option name of `parser` (and of its subcommand parsers), without the leading dashes."""
    names = []
    for action in parser._actions:
        names += [o[2:] for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names += option_names(sub)
    return names


def explain_unknown_key(parser, message: str) -> str:
    """`message` plus, for an unknown key ``a.b.c``, the valid keys under ``a.b`` (and the closest match)."""
    match = _UNKNOWN.search(message)
    if not match:
        return message
    key = next(g for g in match.groups() if g).lstrip("-")
    group, _, name = key.rpartition(".")
    prefix = f"{group}." if group else ""
    known = sorted({n[len(prefix):] for n in option_names(parser) if n.startswith(prefix)
                    and "." not in n[len(prefix):] and not n.endswith("+")} - {"help", "config"})
    if not known:
        return message
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" did you mean '{prefix}{close[0]}'?" if close else ""
    return f"{message.rstrip('. ')}. '{key}' is not an option;{hint} Valid keys under '{group or '(top level)'}': " \
           f"{', '.join(known)}."
