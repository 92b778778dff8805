"""``pinsignal pipelines check|preview``: validate pipeline files, or show what an event produces.

    pinsignal pipelines check [PATH...]
        Exit 0 when every file is valid; else print every error as ``file:line: message``, exit 1.
        Without PATH: PINSIGNAL_PIPELINES, else the shipped pipelines.

    pinsignal pipelines preview EVENT.json [--pipelines PATH] [--now WHEN] [--epik V] [--cookie N=V]
        Print a JSON array, one entry per Pinterest event produced:
        ``{"pipeline": ..., "event": {...}, "valid": true|false, "errors": [...]}``.
        Exit 0 when all are valid, 1 otherwise, 2 when EVENT.json is malformed (one-line reason).

EVENT.json holds one incoming event, a list of them, or ``{"batch": [...]}`` ("-" reads stdin).
``--now`` is ``event`` (the default: each event's own time), ``clock``, an ISO-8601 time or epoch
seconds; how events are replayed is :mod:`pinsignal.pipeline.preview`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from pinsignal.errors import PipelineLoadError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate pipeline files (exit 1 with file:line: message errors)",
                               description="Validate pipeline files; print every error as file:line: message.")
    check.add_argument("paths", nargs="*", metavar="PATH",
                       help="pipeline files or folders (default: PINSIGNAL_PIPELINES, else the shipped ones)")
    preview = actions.add_parser("preview", help="print the Pinterest events an incoming event produces",
                                 description="Print, as a JSON array, the Pinterest events an incoming event "
                                             "produces and whether each is valid.")
    preview.add_argument("event_file", metavar="EVENT.json", help="an incoming event, a list, or {\"batch\": [...]}")
    preview.add_argument("--pipelines", action="append", metavar="PATH",
                         help="pipeline file or folder (repeatable; default: PINSIGNAL_PIPELINES or the shipped ones)")
    preview.add_argument("--now", default="event", metavar="WHEN",
                         help="'event' (default: the event's own time), 'clock', an ISO-8601 time or epoch seconds")
    preview.add_argument("--epik", help="the request's epik query value")
    preview.add_argument("--source", choices=("browser", "server"), default="browser",
                         help="who sent the event(s): a browser (default) or a server source (trigger.source)")
    preview.add_argument("--cookie", action="append", default=[], metavar="NAME=VALUE", help="a request cookie")
    preview.add_argument("--country", help="default country for phone numbers (default: PINSIGNAL_DEFAULT_COUNTRY)")


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check(args)
    return _preview(args)


def _configured_paths(paths: list[str] | None) -> tuple[list[Path], str]:
    from pinsignal.config import Config

    config = Config.from_env()
    chosen = [Path(path) for path in paths] if paths else list(config.pipeline_paths)
    return chosen, config.default_country


def _check(args: argparse.Namespace) -> int:
    from pinsignal.pipeline import load_pipelines, pipeline_files

    paths, _ = _configured_paths(args.paths)
    try:
        pipelines = load_pipelines(paths)
    except PipelineLoadError as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    if not pipeline_files(paths):
        print(f"no pipeline files (*.yaml, *.yml) in {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    names = ", ".join(pipeline.name for pipeline in pipelines)
    print(f"{len(pipelines)} pipeline(s) valid: {names}", file=sys.stderr)
    return 0


def _preview(args: argparse.Namespace) -> int:
    from pinsignal.events import parse_time
    from pinsignal.pipeline import Engine, RequestContext, load_pipelines
    from pinsignal.pipeline.preview import PreviewError, preview, read_events

    cookies = {}
    for item in args.cookie:
        cookie_name, sep, value = item.partition("=")
        if not sep or not cookie_name:
            print(f"--cookie expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        cookies[cookie_name] = value
    now: Literal["event", "clock"] | float | None = args.now if args.now in ("event", "clock") else parse_time(args.now)
    if now is None:
        print(f"--now expects 'event', 'clock', an ISO-8601 time or epoch seconds, got {args.now!r}", file=sys.stderr)
        return 2
    name = args.event_file
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        print(f"{name}: cannot read it: {exc.strerror or exc}", file=sys.stderr)
        return 2
    paths, country = _configured_paths(args.pipelines)
    try:
        engine = Engine(load_pipelines(paths), default_country=(args.country or country).upper())
        produced = preview(engine, read_events(raw, name=name), RequestContext(epik=args.epik, cookies=cookies),
                           now=now, name=name, source=args.source)
    except PipelineLoadError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 2
    except PreviewError as exc:
        print(exc, file=sys.stderr)
        return 2
    results = [{"pipeline": each.pipeline, "event": each.event, "valid": each.valid,
                "errors": each.errors if each.refused is None else [each.refused]} for each in produced]
    import orjson

    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    if not results:
        print("no pipeline matched the event(s)", file=sys.stderr)
    return 0 if all(each.valid for each in produced) else 1
