"""The single ``rad`` console script.

Subcommands are registered as entry points in the group ``rad.commands`` (see pyproject.toml), so
every package (world_model, rad_env, agents) adds its own commands without this module importing
it. A command module defines ``add_arguments(parser)`` and ``main(args) -> int`` and keeps its
heavy imports inside ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from world_model.errors import RadError


def _commands() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="rad.commands")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rad", description="RAD world models: collect data, train, evaluate, imagine."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in sorted(_commands().items()):
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip().splitlines()
        summary = doc[0] if doc else ""
        p = sub.add_parser(name, help=summary, description=(module.__doc__ or "").strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RadError as exc:  # errors meant for the user: no traceback
        print(f"rad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
