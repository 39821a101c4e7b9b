"""Decoding options, declared once: each option is a field of its family's decoding config (a frozen dataclass)
made with `option(...)`, which carries its help text, its command-line flag and its valid values. Everything else
derives from these declarations: the flags of `magnet-generate` and `magnet-evaluate` (cli/options.py), the app's
controls (app/traits.py), the options a training run records (training's `DecodingDefaults`), what a family refuses
(generation/plan.py), and the check of a value (`check_fields`, run by each config's `__post_init__`).

A wrong value is an `OptionError`: it names the option by its Python name (`temperature=-1.0: ...`), and the
command lines and the app show the same message under their own name for it (`--temperature -1: ...`).
"""

from __future__ import annotations

import math
import types
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

OPTION = "magnet_lightning.option"
"""The dataclass field metadata key of a declaration."""


@dataclass(frozen=True)
class Option:
    """What is declared of one option besides its type and default."""

    help: str
    flag: str | None = None
    """Its command-line flag (default: --the-name-with-dashes)."""
    minimum: float | None = None
    """Lowest valid value (inclusive)."""
    maximum: float | None = None
    """Highest valid value (inclusive)."""
    above: float | None = None
    """Values must be greater than this."""
    below: float | None = None
    """Values must be smaller than this."""
    choices: tuple[str, ...] = ()
    negate: str | None = None
    """A boolean option whose flag sets it to False (use_sampling: --greedy)."""
    negate_help: str = ""
    """What that flag does, for command-line help."""
    per_codebook: bool = False
    """A tuple with one entry per codebook (checked against the model's K where the plan is built)."""
    control: bool = True
    """Shown as a control in the app (False: set elsewhere, e.g. the rescoring weight beside the rescorer)."""
    departure: bool = False
    """A departure from the reference, off by default (the docs list these)."""
    schedule: bool = False
    """A value the decoder feeds to each step as data (temperature, guidance): the fast path's captured steps do
    not depend on it (generation/fast.py keys its buffers by the other options)."""
    unit: str = ""
    """The unit of its value in messages and page labels ('s')."""
    metavar: str | None = None
    """The value's name in command-line help."""


def option(default: Any, help: str, **declared: Any) -> Any:
    """A decoding config field with its declaration, e.g. `top_p: float = option(0.9, "nucleus mass", minimum=0,
    maximum=1)`."""
    return field(default=default, metadata={OPTION: Option(help, **declared)})


class Names:
    """How a message names options: as the Python API does (`temperature`, `temperature=0.5`); the command lines
    and the app give their own (a flag, a page label)."""

    SPOKEN = {"rescorer": "a rescorer (rescorer=)", "two_model": "an autoregressive generator (hybrid_generate)",
              "prompt": "the prompt", "infill": "infill",
              "melody": "a melody (melody=)"}

    def name(self, option: str) -> str:
        return self.SPOKEN.get(option, option)

    def set(self, option: str, value: Any) -> str:
        return f"{option}={show(value)}"


class OptionError(ValueError):
    """A value an option (or a generation input) does not take. Its message is a template naming options as
    `{name}` (the option itself), `{set}` (the option with its value) or `{other_option}`, so that every surface
    shows the same sentence in its own words: `str()` as the Python API does, `render(names)` otherwise."""

    def __init__(self, option: str, template: str, value: Any = None):
        self.option, self.template, self.value = option, template, value
        super().__init__(self.render(Names()))

    def render(self, names: Names) -> str:
        return self.template.format_map(_Fill(names, self.option, self.value))


class _Fill(dict):
    def __init__(self, names: Names, option: str, value: Any):
        super().__init__(value=show(value))
        self.names, self.option, self.value = names, option, value

    def __missing__(self, key: str) -> str:
        if key == "name":
            return self.names.name(self.option)
        if key == "set":
            return self.names.set(self.option, self.value)
        return self.names.name(key)


def show(value: Any) -> str:
    """A value as messages print it (steps as '20 10 10 10', floats without trailing zeros)."""
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Declared:
    """One declared option of a config class: its name, type (`kind`), default and declaration."""

    name: str
    kind: str
    """'bool', 'int', 'float', 'choice', 'steps' (a tuple of ints) or 'str'."""
    optional: bool
    """None is a valid value (the option's own rule applies)."""
    default: Any
    option: Option

    @property
    def flag(self) -> str:
        """Its command-line flag (a boolean set False by its flag: that flag, e.g. --greedy)."""
        return self.option.negate or self.option.flag or "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        return self.option.help

    def bounds(self) -> str:
        """The valid values in words ('in [0, 1]', 'above 0', 'one of max, prod'), '' when any value of its type."""
        o = self.option
        if o.choices:
            return "one of " + ", ".join(o.choices)
        low = f"[{o.minimum:g}" if o.minimum is not None else f"({o.above:g}" if o.above is not None else None
        high = f"{o.maximum:g}]" if o.maximum is not None else f"{o.below:g})" if o.below is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if o.minimum is not None else '>'} {low[1:]}"
        return f"{'<=' if o.maximum is not None else '<'} {high[:-1]}" if high else ""

    def check(self, value: Any) -> Any:
        """The value in its canonical form (a tuple for steps), or an OptionError naming what is wrong."""
        if value is None and self.optional:
            return None
        value = self._typed(value)
        numbers = value if self.kind == "steps" else (value,) if self.kind in ("int", "float") else ()
        o = self.option
        for number in numbers:
            if isinstance(number, float) and not math.isfinite(number):
                raise OptionError(self.name, "{name} must be a finite number, got {value}", value)
            if (o.minimum is not None and number < o.minimum) or (o.maximum is not None and number > o.maximum) or (
                    o.above is not None and number <= o.above) or (o.below is not None and number >= o.below):
                bounds = "a positive number" if (o.above, o.minimum, o.maximum, o.below) == (0, None, None, None) \
                    else self.bounds()
                each = " (every entry)" if self.kind == "steps" else ""
                raise OptionError(self.name, f"{{name}} must be {bounds}{each}, got {{value}}", value)
        if o.choices and value not in o.choices:
            raise OptionError(self.name, f"{{set}}: choose one of {', '.join(o.choices)}", value)
        if self.kind == "steps" and not value:
            raise OptionError(self.name, "{name}: give at least one entry", value)
        return value

    def _typed(self, value: Any) -> Any:
        try:
            if self.kind == "steps":
                return tuple(_integer(v) for v in value)
            if self.kind == "int":
                return _integer(value)
            if self.kind == "float":
                if isinstance(value, bool):
                    raise TypeError
                return float(value)
            if self.kind == "bool" and not isinstance(value, bool):
                raise TypeError
        except (TypeError, ValueError):
            raise OptionError(self.name, f"{{name}} must be {_KIND_WORDS[self.kind]}, got {value!r}") from None
        return value


_KIND_WORDS = {"steps": "whole numbers, one per codebook", "int": "a whole number", "float": "a number",
               "bool": "true or false", "choice": "a name", "str": "text"}


def _integer(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(float(value)):
        raise ValueError(value)
    return int(float(value))


def _kind(annotation: Any, option: Option) -> tuple[str, bool]:
    """(kind, optional) of a field annotation."""
    args = get_args(annotation)
    optional = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
    if optional:
        annotation = next(a for a in args if a is not type(None))
    if option.choices:
        return "choice", optional
    if get_origin(annotation) is tuple:
        return "steps", optional
    kinds = {bool: "bool", int: "int", float: "float", str: "str"}
    if annotation not in kinds:
        raise TypeError(f"option type {annotation} has no command-line or page form")
    return kinds[annotation], optional


@cache
def declared_options(config_class: type) -> tuple[Declared, ...]:
    """The declared options of a decoding config class, in field order (fields without a declaration, e.g. the
    model's training span, are not options)."""
    hints = get_type_hints(config_class)
    found = []
    for f in fields(config_class):
        declared = f.metadata.get(OPTION)
        if declared is None:
            continue
        kind, optional = _kind(hints[f.name], declared)
        found.append(Declared(f.name, kind, optional, None if f.default is MISSING else f.default, declared))
    return tuple(found)


def check_fields(config: Any) -> None:
    """Check every declared field of a frozen config instance and store its canonical form (`__post_init__`)."""
    for declared in declared_options(type(config)):
        object.__setattr__(config, declared.name, declared.check(getattr(config, declared.name)))


def option_names(config_class: type) -> frozenset[str]:
    return frozenset(d.name for d in declared_options(config_class))
