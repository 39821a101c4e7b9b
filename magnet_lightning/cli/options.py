"""The command lines' generation flags, derived from the declarations (generation/options.py): every decoding
option of every registered family (the union over the family table, so a new family's options appear with no edit
here) and the generation-level options of `GenerationRequest`. A value is checked once, where the plan is built;
the flags only parse. Messages name options by their flags (`FlagNames`).
"""

from __future__ import annotations

import argparse
from typing import Any

from magnet_lightning.errors import UserError
from magnet_lightning.generation.families import DECODER_FAMILIES, family_label
from magnet_lightning.generation.options import Declared, Names, OptionError, declared_options, show
from magnet_lightning.generation.request import GenerationRequest

INPUT_FLAGS = {"prompt": "--prompt-audio", "infill": "--infill", "rescorer": "--rescorer CKPT",
               "two_model": "--hybrid-ar CKPT", "melody": "--melody",
               "decoding": "--steps/--temperature/..."}
"""Generation inputs that are not declared options, by the generate command's flags."""


def decoding_options() -> dict[str, tuple[Declared, list[str]]]:
    """Every decoding option of the registered families: name -> (its declaration, the families that take it).
    The first family's declaration gives the flag and help; every family must declare a name with the same flag and
    kind (a ValueError otherwise: one flag, one meaning)."""
    table: dict[str, tuple[Declared, list[str]]] = {}
    for family, spec in DECODER_FAMILIES.items():
        for declared in declared_options(spec.config_class):
            first, families = table.setdefault(declared.name, (declared, []))
            if (first.flag, first.kind) != (declared.flag, declared.kind):
                raise ValueError(f"option {declared.name} is declared as {declared.flag} ({declared.kind}) by the "
                                 f"{family_label(family)} family but as {first.flag} ({first.kind}) before")
            families.append(family_label(family))
    return table


def dest(declared: Declared) -> str:
    """The argparse attribute of an option's flag (`--steps` -> args.steps, `--greedy` -> args.greedy)."""
    return declared.flag.lstrip("-").replace("-", "_")


def _add(parser: argparse.ArgumentParser, declared: Declared, help_text: str) -> None:
    kind, o = declared.kind, declared.option
    kwargs: dict[str, Any] = {"default": None, "dest": dest(declared), "help": help_text}
    if kind == "bool":
        if o.negate:
            kwargs.update(default=False, help=o.negate_help + help_text[len(declared.help):])
            parser.add_argument(o.negate, action="store_true", **kwargs)
        else:
            parser.add_argument(declared.flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if kind == "choice":
        kwargs["choices"] = list(o.choices)
    elif kind == "steps":
        kwargs.update(type=int, nargs="+")
    else:
        kwargs["type"] = {"int": int, "float": float}.get(kind, str)
    if o.metavar:
        kwargs["metavar"] = o.metavar
    parser.add_argument(declared.flag, **kwargs)


def add_generation_flags(parser: argparse.ArgumentParser, request_options: tuple[str, ...] = (
        "duration", "extend_stride", "preset")) -> None:
    """The flags of `request_options` (GenerationRequest's declarations) and of every family's decoding options,
    each with its help, the families that take it and its valid values."""
    requests = {d.name: d for d in declared_options(GenerationRequest)}
    for name in request_options:
        declared = requests[name]
        _add(parser, declared, declared.help + _bounds(declared))
    group = parser.add_argument_group("decoding options (each checkpoint takes its family's; default: the "
                                      "checkpoint's own)")
    for declared, families in decoding_options().values():
        everyone = len(families) == len(DECODER_FAMILIES)
        takes = "" if everyone else f" [{', '.join(families)}]"
        _add(group, declared, declared.help + _bounds(declared) + takes)


def _bounds(declared: Declared) -> str:
    bounds = declared.bounds()
    return f" ({bounds})" if bounds and declared.kind != "choice" else ""


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding options the flags set, by option name (a flag left out is not there; --greedy sets
    use_sampling=False)."""
    given = {}
    for name, (declared, _) in decoding_options().items():
        value = getattr(args, dest(declared), None)
        if declared.option.negate:
            value = False if value else None
        if value is not None:
            given[name] = value
    return given


class FlagNames(Names):
    """Options named by their flags in messages."""

    def __init__(self) -> None:
        self.flags = {name: declared.flag for name, (declared, _) in decoding_options().items()}
        self.flags.update({d.name: d.flag for d in declared_options(GenerationRequest)})

    def name(self, option: str) -> str:
        return self.flags.get(option) or INPUT_FLAGS.get(option) or option

    def set(self, option: str, value: Any) -> str:
        return f"{self.name(option).split()[0]} {show(value)}"


def user_error(err: OptionError) -> UserError:
    """The one-line command-line error of a plan's OptionError."""
    return UserError(err.render(FlagNames()))
