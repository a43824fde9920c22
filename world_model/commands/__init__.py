"""Subcommands of the ``rad`` CLI, one module each (registered as ``rad.commands`` entry points)."""
