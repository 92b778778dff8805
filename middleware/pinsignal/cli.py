"""``pinsignal`` command line: parses arguments and calls one command module's ``run``.

Each command lives in ``pinsignal/commands/<name>.py`` with two functions:
``configure(parser)`` adds its arguments and ``run(args) -> int`` does the work. Heavy imports
stay inside ``run`` so that ``pinsignal --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pinsignal import __version__
from pinsignal.errors import PinSignalError

__all__ = ["main"]

# command name -> (module under pinsignal.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the demo: embedded Redis, worker, sandbox and the example shop"),
    "worker": ("worker", "run the arq delivery worker"),
    "proxy": ("proxy", "reverse proxy with the middleware in front of any site"),
    "sandbox": ("sandbox", "local, strict stand-in for the Pinterest events endpoint"),
    "pipelines": ("pipelines", "check pipeline files or preview what an event produces"),
    "dlq": ("dlq", "list, replay or purge dead-lettered events"),
    "status": ("status", "queue depth, in flight, dead letters, paused accounts, delivered counts"),
    "import": ("import_", "offline conversions from a CSV or JSON Lines file"),
    "tail": ("tail", "follow every stage of every event (the trace) in the terminal"),
    "inspector": ("inspector", "a live web page of the trace: filters, event details, charts"),
    "quarantine": ("quarantine", "list, replay or purge events refused after intake"),
    "quality": ("quality", "match-key coverage per event name, a score, top fixes, Pinterest's EQS"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinsignal",
        description="Server-side tracking for the Pinterest API for Conversions.",
    )
    parser.add_argument("--version", action="version", version=f"pinsignal {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"pinsignal.commands.{module_name}")
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        module.configure(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        return int(args._module.run(args) or 0)
    except PinSignalError as exc:
        print(f"pinsignal {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
