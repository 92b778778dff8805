"""``pinsignal tail [--event NAME] [--stage STAGE] [--json]``: follow the trace in a terminal."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event", help="only this event (the incoming name, e.g. order_completed, or "
                                        "Pinterest's, e.g. checkout)")
    parser.add_argument("--stage", help="only this stage (received, refused, queued, sent, warning, delivered...)")
    parser.add_argument("--id", dest="event_id", help="only this event id or message id")
    parser.add_argument("--last", type=int, default=0, help="print the last N records first (default 0)")
    parser.add_argument("--json", action="store_true", help="one JSON record per line")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    import orjson

    from pinsignal import store
    from pinsignal.config import Config
    from pinsignal.errors import ConfigError
    from pinsignal.queue import unavailable
    from pinsignal.trace import STAGES, follow, format_record, read_recent, record_matches

    if args.stage is not None and args.stage not in STAGES:
        raise ConfigError(f"--stage must be one of {', '.join(STAGES)}, got {args.stage!r}.")

    def show(record: dict[str, object]) -> None:
        if not record_matches(record, event=args.event, stage=args.stage, event_id=args.event_id):
            return
        line = orjson.dumps(record).decode() if args.json else format_record(record)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def main() -> int:
        config = Config.from_env()
        redis = await store.connect(config, socket_connect_timeout=5)
        try:
            last = "$"
            with unavailable("reading the trace"):
                if args.last > 0:
                    recent = await read_recent(redis, count=args.last)
                    for record in recent:
                        show(record)
                    last = str(recent[-1]["id"]) if recent else "$"
                if not args.json:
                    state = "Ctrl-C stops" if config.trace_maxlen else "it is off: PINSIGNAL_TRACE_MAXLEN=0"
                    print(f"following the trace ({state})", file=sys.stderr)
                async for record in follow(redis, last=last):
                    show(record)
        finally:
            await redis.aclose()
        return 0

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
