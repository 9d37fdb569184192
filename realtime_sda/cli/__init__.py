"""The ``realtime-sda`` command. Each subcommand lives in its own module with
``register(subparsers)`` and imports its heavy dependencies only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "SUBCOMMAND_MODULES"]

#: Modules that each register one or more subcommands.
SUBCOMMAND_MODULES = (
    "animate",
    "faces",
    "models",
    "demo",
    "stream",
    "serve",
    "train",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="realtime-sda", description="Speech-driven facial animation, live.")
    parser.add_argument("--version", action="version", version=f"realtime-sda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import RealtimeSDAError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RealtimeSDAError as exc:
        print(f"realtime-sda: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
