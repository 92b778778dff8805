"""``pinsignal quarantine list | replay | purge``: events refused after intake, run again once fixed."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list quarantined events, newest first")
    listing.add_argument("--reason", help="only this reason (invalid_event, no_pipeline)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100; 0 = all)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line, with the hashed envelope")
    replay = actions.add_parser("replay", help="run the current pipelines on quarantined events and queue them, "
                                               "each to the ad account it was routed to (PINSIGNAL_ACCOUNTS)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--reason", help="every quarantined event of this reason")
    which.add_argument("--id", dest="item_id", help="one quarantined event, by id")
    which.add_argument("--all", action="store_true", help="every quarantined event")
    purge = actions.add_parser("purge", help="forget quarantined events")
    purge.add_argument("--older-than", help="e.g. 3d, 12h, 90m (default: all)")
    purge.add_argument("--reason", help="only this reason")


def _row(item: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(item["at"])))
    message = "; ".join(item.get("errors") or [])
    message = message if len(message) <= 90 else message[:87] + "..."
    return f"{item['id']}  {when}Z  {item['reason']:<13}  {item.get('event') or '?':<20}  " \
           f"{item.get('message_id') or '':<24}  {message}"


def run(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from pinsignal.commands.common import older_than as seconds, redis_client
    from pinsignal.config import Config
    from pinsignal.quarantine import Quarantine, replay
    from pinsignal.queue import unavailable

    older_than = seconds(args.older_than) if args.action == "purge" and args.older_than else None

    async def main() -> int:
        config = Config.from_env()
        async with redis_client(config) as redis:
            store = Quarantine(redis, max_items=config.quarantine_max, days=config.quarantine_days)
            with unavailable("reading the quarantine"):
                if args.action == "list":
                    found = await store.list(reason=args.reason, limit=args.limit or None)
                    if args.json:
                        for item in found:
                            sys.stdout.write(orjson.dumps(item).decode() + "\n")
                        return 0
                    if not found:
                        print("nothing in quarantine" + (f" with reason {args.reason!r}" if args.reason else ""))
                        return 0
                    print(f"{'id':<16}  {'refused at':<20}  {'reason':<13}  {'event':<20}  {'message_id':<24}  why")
                    for item in found:
                        print(_row(item))
                    return 0
                if args.action == "replay":
                    return await _replay(store, config)
                purged = await store.purge(older_than=older_than, reason=args.reason)
                print(f"purged {purged} quarantined events")
                return 0

    async def _replay(store: Quarantine, config: Config) -> int:
        from pinsignal.accounts import Accounts
        from pinsignal.pipeline import Engine
        from pinsignal.queue import EventQueue

        items = await store.list(reason=None if args.all else args.reason,
                                 ids=[args.item_id] if args.item_id else None)
        if args.item_id and not items:
            print(f"pinsignal quarantine replay: no quarantined event with id {args.item_id!r}", file=sys.stderr)
            return 1
        engine = Engine.from_config(config)
        routes = Accounts.from_config(config)
        queue = await EventQueue.connect(config)
        try:
            report = await replay(store, items, engine, queue, routes=routes)
        finally:
            await queue.close()
        print(f"replayed {len(items) - len(report.refused)} of {len(items)} quarantined events: "
              f"{len(report.queued)} Pinterest events queued, {len(report.duplicates)} already queued before")
        for account, queued in sorted(report.accounts.items()):
            print(f"  account {account}: {queued} queued")
        for item_id, errors in report.refused.items():
            print(f"  still refused {item_id}: {'; '.join(errors)}")
        return 1 if report.refused else 0

    return asyncio.run(main())
