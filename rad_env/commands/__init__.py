"""``rad`` subcommands of the rad_env package (registered as ``rad.commands`` entry points)."""
