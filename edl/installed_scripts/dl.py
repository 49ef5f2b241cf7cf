"""`edl`: deploy and inspect the lake's AWS resources, and run the embedded local cloud.

Each command is an options dataclass (parsed by argparse-dataclass, so every command has its own
`--help`) and a function that takes the options and returns an exit code. Errors are caught in
exactly one place, `main()`, and shown as one `Error: …` line with a hint; `--debug` adds the
traceback and the log.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

from edl import __version__
from edl.installed_scripts.commands import COMMANDS, PLAN_TARGETS, Command
from edl.ui import UI

_EXAMPLES = """\
examples:
  edl local start                        start the local cloud (moto server, IAM enforced)
  edl validate                           render and cfn-lint every template, no AWS needed
  edl plan deploy-core --instance local  what a deploy would create, update or leave alone
  edl deploy-core --instance local
  edl deploy-dataset clinical_trials --tier sensitive --owner alice --instance local
  edl status --instance local
"""


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: edl COMMAND [options]   (edl COMMAND --help for a command's options)",
             "", "Deploy the Enterprise Data Lake's AWS resources.", "", "commands:"]
    for name, command in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {command.summary}")
    return "\n".join(lines) + "\n\n" + _EXAMPLES


def gather_repeated(args: Sequence[str], flags: set[str]) -> list[str]:
    """`--key a --key b c` → `--key a b c` for the options in `flags` (argparse-dataclass has no
    `action="extend"`): each such option's values, wherever they stand, follow its first use."""
    out: list[object] = []
    values: dict[str, list[str]] = {}
    current: list[str] | None = None
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in flags:
            if name not in values:
                values[name] = []
                out.append(name)  # replaced by the option and all its values below
            current = values[name]
            if eq:
                current.append(value)
                current = None
        elif current is not None and not arg.startswith("-"):
            current.append(arg)
        else:
            current = None
            out.append(arg)
    gathered: list[str] = []
    for item in out:
        gathered.extend([item, *values[item]] if item in values else [str(item)])
    return gathered


def _parse(command: Command, prog: str, args: Sequence[str]):
    import argparse
    from dataclasses import fields

    from argparse_dataclass import ArgumentParser

    parser = ArgumentParser(command.options, prog=prog, description=command.description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    # Options marked "extend" accumulate over repeats: `--key a --key b` gives [a, b].
    repeatable = {flag for f in fields(command.options) if f.metadata.get("extend")
                  for flag in f.metadata["args"]}
    return parser.parse_args(gather_repeated(args, repeatable))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        sys.stdout.write(f"edl {__version__}\n")
        return 0

    name, rest = args[0], args[1:]
    ui = UI()
    if name not in COMMANDS:
        ui.error(f"unknown command {name!r}; run `edl --help` for the list")
        return 2
    command = COMMANDS[name]
    if name in ("plan", "diff"):
        # `edl plan deploy-core …` parses the rest with the deploy command's own options.
        if not rest or rest[0] not in PLAN_TARGETS:
            if rest and rest[0] in ("-h", "--help"):
                sys.stdout.write(f"usage: edl {name} {{{','.join(PLAN_TARGETS)}}} [options]\n\n"
                                 f"{command.description}\n")
                return 0
            ui.error(f"edl {name} needs what to plan: one of {', '.join(PLAN_TARGETS)}")
            return 2
        target = COMMANDS[rest[0]]
        options = _parse(target, f"edl {name} {rest[0]}", rest[1:])
    else:
        options = _parse(command, f"edl {name}", rest)

    debug = getattr(options, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        for noisy in ("botocore", "boto3", "urllib3", "cfnlint"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return command.run(options, ui) or 0
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place errors become messages
        from edl.errors import describe_error

        message, hint, code = describe_error(exc)
        if debug or code is None:
            traceback.print_exc()
        ui.error(message)
        if hint:
            ui.info(f"  Hint: {hint}")
        return code if code is not None else 1


if __name__ == "__main__":
    sys.exit(main())
