"""The `mad` command: one entry point, one subcommand per package."""
