"""``pinsignal pipelines check|preview``: validate pipeline files, or show what an event produces.

    pinsignal pipelines check [PATH...]
        Exit 0 when every file is valid; else print every error as ``file:line: message``, exit 1.
        Without PATH: PINSIGNAL_PIPELINES, else the shipped pipelines.

    pinsignal pipelines preview EVENT.json [--pipelines PATH] [--now WHEN] [--epik V] [--cookie N=V]
        Print a JSON array, one entry per Pinterest event produced:
        ``{"pipeline": ..., "event": {...}, "valid": true|false, "errors": [...]}``.
        Exit 0 when all are valid, 1 otherwise, 2 when EVENT.json is malformed (one-line reason).

EVENT.json holds one incoming event, a list of them, or ``{"batch": [...]}`` ("-" reads stdin).
Preview replays each event as received when it says it was sent (``sent_at``, else its
timestamp), so clock-skew correction does not move it. ``--now`` is the moment validation treats
as the present: ``event`` (the default) is the event's own time, so an example file written months
ago still previews as valid; ``clock`` is the real clock (and shows events that are too old);
``2026-11-29T12:00:00Z`` or epoch seconds pick a moment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from pinsignal.errors import EnvelopeError, PipelineLoadError

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
    from pinsignal.events import parse_envelope, parse_time
    from pinsignal.pipeline import Engine, RequestContext, load_pipelines

    name = args.event_file
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        print(f"{name}: cannot read it: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        print(f"{name}: not valid JSON: {exc}", file=sys.stderr)
        return 2
    if isinstance(document, dict) and isinstance(document.get("batch"), list):
        document = document["batch"]
    events = document if isinstance(document, list) else [document]
    if not events:
        print(f"{name}: no events in the file", file=sys.stderr)
        return 2
    cookies = {}
    for item in args.cookie:
        cookie_name, sep, value = item.partition("=")
        if not sep or not cookie_name:
            print(f"--cookie expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        cookies[cookie_name] = value
    now_fixed: float | None = None
    if args.now not in ("event", "clock"):
        now_fixed = parse_time(args.now)
        if now_fixed is None:
            print(f"--now expects 'event', 'clock', an ISO-8601 time or epoch seconds, got {args.now!r}",
                  file=sys.stderr)
            return 2
    paths, country = _configured_paths(args.pipelines)
    try:
        engine = Engine(load_pipelines(paths), default_country=(args.country or country).upper())
    except PipelineLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 2
    request = RequestContext(epik=args.epik, cookies=cookies)
    results: list[dict[str, Any]] = []
    for index, raw_event in enumerate(events):
        where = name if len(events) == 1 else f"{name}[{index}]"
        clock = time.time() if args.now == "clock" else now_fixed
        received_at = _event_moment(raw_event)
        try:
            envelope = parse_envelope(raw_event, received_at=received_at)
        except EnvelopeError as exc:
            print(f"{where}: not a valid event: {'; '.join(exc.reasons)}", file=sys.stderr)
            return 2
        now = clock if clock is not None else parse_time(envelope["timestamp"])
        for produced in engine.process(envelope, request, now=now):
            results.append({"pipeline": produced.pipeline, "event": produced.event, "valid": produced.valid,
                            "errors": produced.errors})
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    if not results:
        print("no pipeline matched the event(s)", file=sys.stderr)
    return 0 if all(result["valid"] for result in results) else 1


def _event_moment(raw: object) -> float:
    """When the event says it was sent (or happened), so that preview replays it at that moment."""
    from pinsignal.events import parse_time

    if isinstance(raw, dict):
        for key in ("sent_at", "sentAt", "timestamp", "original_timestamp", "originalTimestamp"):
            moment = parse_time(raw.get(key))
            if moment is not None:
                return moment
    return time.time()
