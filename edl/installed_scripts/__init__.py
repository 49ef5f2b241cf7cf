"""The `edl` command: a thin layer that parses options, asks the factory for what it needs, makes
one call and hands the result to the UI."""
