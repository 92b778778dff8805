"""``pinsignal quality [--json]``: match-key coverage per event name, a score, the top fixes, Pinterest's EQS."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--lookback", choices=["1d", "14d"], default="14d",
                        help="Pinterest's Event Quality Score window (with PINTEREST_READ_TOKEN; default 14d)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from pinsignal import store
    from pinsignal.config import Config
    from pinsignal.quality import coverage, fetch_eqs, format_quality, to_dict
    from pinsignal.queue import unavailable

    async def main() -> int:
        config = Config.from_env()
        redis = await store.connect(config, socket_connect_timeout=5)
        try:
            with unavailable("reading the trace"):
                rows = await coverage(redis)
        finally:
            await redis.aclose()
        eqs = await fetch_eqs(config, lookback=args.lookback) if config.read_token else None
        if args.json:
            print(orjson.dumps(to_dict(rows, eqs), option=orjson.OPT_INDENT_2).decode())
        else:
            print(format_quality(rows, eqs))
        return 0

    return asyncio.run(main())
