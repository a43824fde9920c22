"""Command-line options derived from a config dataclass: one flag per field, its docstring as help.

Every tool whose options are a dataclass (the agents' ``python -m agents.*``, ``rad`` commands
whose run options are a dataclass) builds its parser with :func:`add_options` and its config with
:func:`from_args`, so flags, defaults, types, choices and ``--help`` text come from one place:
the dataclass. Type rules: ``bool`` -> ``--flag/--no-flag``; ``int``, ``float``, ``str`` (and
``X | None``, default None) -> ``type=X``; ``Literal[...]`` -> ``choices``; ``tuple[X, ...]`` ->
``nargs='+'`` of X, each value also comma-separated (``--channels 16,32,64`` or ``--channels 16 32
64``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}``: the string literal under each annotated field of ``cls`` (and of
    its dataclass bases), whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in itertools.pairwise(body):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _list_of(item: type, name: str):
    """argparse type of one value of a tuple option: an item, or several comma-separated."""
    def parse(text: str):
        try:
            values = [item(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected {item.__name__} values (space- or comma-separated), got "
                f"{text!r}") from None
        return values[0] if len(values) == 1 else _Several(values)
    parse.__name__ = item.__name__
    return parse


class _Several(list):
    """Several values given in one comma-separated token (flattened by :func:`from_args`)."""


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
                required: Iterable[str] = (), defaults: Mapping[str, Any] | None = None,
                choices: Mapping[str, Iterable[Any]] | None = None) -> argparse.ArgumentParser:
    """Add one option per field of the dataclass ``cls`` (not those in ``skip``).

    Args:
        required: fields that must be given (no default shown).
        defaults: replaces the dataclass defaults shown and used.
        choices: allowed values per field (beyond those a ``Literal`` type gives).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    skip, required = set(skip), set(required)
    defaults, choices = dict(defaults or {}), dict(choices or {})
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp = _unwrap_optional(hints[f.name])
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        help_text = docs.get(f.name, "").replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if f.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            kwargs["help"] = f"{help_text} (default: %(default)s)".strip()
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            values = typing.get_args(tp)
            kwargs.update(type=type(values[0]), choices=list(values))
        elif origin in (tuple, list):
            item = _unwrap_optional(typing.get_args(tp)[0]) if typing.get_args(tp) else str
            kwargs.update(nargs="+", type=_list_of(item, flag(f.name)))
            if isinstance(default, tuple):
                kwargs["default"] = list(default)
        elif tp in (int, float, str):
            kwargs["type"] = tp
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line rule for type {tp!r}")
        if f.name in choices:
            kwargs["choices"] = list(choices[f.name])
        parser.add_argument(flag(f.name), **kwargs)
    return parser


def from_args(cls: type[T], args: argparse.Namespace | Mapping[str, Any], *,
              skip: Iterable[str] = (), **overrides: Any) -> T:
    """An instance of the dataclass ``cls`` from parsed ``args`` (lists back to tuples where the
    field default is a tuple); fields in ``skip`` keep their defaults."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    skip = set(skip)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init or f.name not in values:
            continue
        value = values[f.name]
        if isinstance(value, list):
            value = [v for part in value for v in (part if isinstance(part, _Several) else [part])]
            if isinstance(f.default, tuple) or f.default is dataclasses.MISSING:
                value = tuple(value)
        kwargs[f.name] = value
    kwargs.update(overrides)
    return cls(**kwargs)
