"""Benchmark options, each declared once: a config dataclass field holds its default and help;
the command-line arguments and the config built from parsed arguments follow from it.

No torch here, so that building the parser (``maxvit --help``) stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maxvit.errors import UserError


def parse_list(text: str, what: str) -> list[str]:
    """Split a comma-separated option value; an empty list is a ``UserError``."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UserError(f"--{what} needs at least one value")
    return items


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field that is also a command-line option.

    `flag` defaults to ``--field-name``; `parse` turns the command-line text into the field's
    value (e.g. a comma-separated list), and the default is shown as that text. Booleans become
    ``--x/--no-x``.
    """
    meta = {"help": help, "flag": flag, "choices": choices, "parse": parse, "metavar": metavar}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def add_options(parser: argparse.ArgumentParser, config: type) -> None:
    """One argument per option field of the dataclass `config`, in field order."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        meta = f.metadata
        if "help" not in meta:
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        default = _default(f)
        shown = "" if default is None else f" (default {_text(default)})"
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"] + shown}
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if hints[f.name] is bool:
            kwargs |= {"action": argparse.BooleanOptionalAction, "default": default}
        elif meta["parse"] is not None:
            kwargs |= {"default": _text(default) if default is not None else None}
        else:
            kind = next(
                t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None)
            )
            kwargs |= {"default": default, "type": kind, "choices": meta["choices"]}
        parser.add_argument(flag, **kwargs)


def from_args(config: type, args: argparse.Namespace) -> Any:
    """The `config` dataclass with every option field taken from parsed `args`."""
    values = {}
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        value = getattr(args, f.name)
        parse = f.metadata["parse"]
        values[f.name] = parse(value) if parse is not None and isinstance(value, str) else value
    return config(**values)


def models_option(default: str, help: str) -> Any:
    """The comma-separated model list of a benchmark."""
    return option(default.split(","), help, parse=lambda text: parse_list(text, "models"))


def json_option(help: str) -> Any:
    """``--json FILE``: where to write the result document (None: nowhere)."""
    return option(None, help, flag="--json", parse=Path, metavar="FILE")


DEVICES = ("auto", "cpu", "cuda")


@dataclass
class WorkloadOptions:
    """The training step and inference batch that `bench model` and `bench profile` time."""

    batch_size: int = option(8, "images per training step and per inference batch")
    img_size: int = option(224, "square input side in pixels")
    channels_last: bool = option(True, "channels_last model and input")
    # This project's MaxViT infers on its `fuse_for_inference` copy (BN folded, GELU fused);
    # other models run as their libraries ship them.
    fuse_inference: bool = option(
        True,
        "run this project's MaxViT inference on its fused copy (maxvit.models.fuse); other "
        "models run as shipped (`bench model --compile` times the compiled eager model)",
    )
    threads: int | None = option(None, "torch CPU threads (default: torch's)")
