"""The `rsir` command. Each subcommand is a module in rsir.commands exposing NAME, HELP, EXAMPLE,
add_arguments(parser) and run(args) -> int; modules are discovered, so a new command needs no edit here."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import rsir.commands
from rsir import __version__
from rsir.errors import RsirError
from rsir.runtime import tune_allocator


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in sorted(pkgutil.iter_modules(rsir.commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"rsir.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of `rsir` with every discovered subcommand.

    With ``command``, only that subcommand's arguments are built (the others keep their one-line help): building
    some of them imports libraries (``rsir ingest --help`` lists every reader's options), which would otherwise
    slow down the start of every command.
    """
    parser = argparse.ArgumentParser(
        prog="rsir",
        description="Search Earth-observation image archives by example image and by text.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rsir {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME, help=mod.HELP, description=f"{mod.HELP}\n\nexample:\n  {mod.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if command is None or command == mod.NAME:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rsir` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    tune_allocator()  # large batches reuse heap pages instead of faulting in fresh ones (rsir.runtime)
    try:
        return int(args._run(args) or 0)
    except RsirError as e:
        if args.debug:
            raise
        print(f"rsir {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rsir {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
