"""``pinsignal status``: queue depth per account, in flight, dead letters, paused accounts, counters."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from pinsignal.accounts import Accounts
    from pinsignal.commands.common import redis_client
    from pinsignal.config import Config
    from pinsignal.insight import format_insight, read_warnings
    from pinsignal.queue import unavailable
    from pinsignal.status import format_status, read_status

    async def main() -> int:
        config = Config.from_env()
        configured = Accounts.from_config(config).ids
        async with redis_client(config) as redis:
            status = await read_status(redis, configured)
            with unavailable("reading Pinterest's warnings"):
                warnings = await read_warnings(redis)
        refused = {name.split(":", 1)[1]: value for name, value in status.counters.items()
                   if name.startswith("refused:")}
        if args.json:
            print(orjson.dumps({**status.to_dict(), "warnings": warnings, "refused": refused},
                               option=orjson.OPT_INDENT_2).decode())
        else:
            print(format_status(status))
            print(format_insight(warnings, refused))
        return 0

    return asyncio.run(main())
