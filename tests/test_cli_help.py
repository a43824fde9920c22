"""Every command-line tool documents every option: ``--help`` shows a description for each."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from world_model.options import add_options, field_docs, from_args

AGENT_TOOLS = ("compare", "evaluate", "plan", "ppo")


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        text = (action.help or "").replace("(default: %(default)s)", "").strip()
        if not text:
            missing.append(action.option_strings[0])
    return missing


@pytest.mark.parametrize("tool", AGENT_TOOLS)
def test_every_agent_tool_option_has_a_description(tool):
    import importlib

    parser = importlib.import_module(f"agents.{tool}").build_parser()
    assert _undocumented(parser) == []
    parser.format_help()  # renders (no stray % in a docstring)


def test_every_rad_command_option_has_a_description():
    from world_model.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = {name: _undocumented(p) for name, p in sub.choices.items()}
    assert {k: v for k, v in missing.items() if v} == {}


@dataclasses.dataclass(frozen=True)
class _Example:
    steps: int = 4
    """Steps to take."""
    rate: float | None = None
    """A rate (None: none)."""
    fast: bool = False
    """Go fast."""
    names: tuple[str, ...] = ("a", "b")
    """Names, any number."""
    mode: str = "x"
    """One of two modes."""


def test_options_come_from_the_dataclass_with_its_docstrings():
    assert field_docs(_Example)["rate"] == "A rate (None: none)."
    parser = add_options(argparse.ArgumentParser(), _Example, choices={"mode": ("x", "y")})
    cfg = from_args(_Example, parser.parse_args(["--steps", "7", "--rate", "0.5", "--fast",
                                                 "--names", "c", "d", "e"]))
    assert cfg == _Example(steps=7, rate=0.5, fast=True, names=("c", "d", "e"))
    assert from_args(_Example, parser.parse_args([])) == _Example()
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "z"])
    assert "Steps to take. (default: 4)" in " ".join(parser.format_help().split())
