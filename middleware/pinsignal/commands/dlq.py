"""``pinsignal dlq list | replay | purge``: inspect and re-send dead-lettered events."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list dead letters, newest first")
    listing.add_argument("--reason", help="only this reason (rejected, bad_request, expired)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100; 0 = all)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line, with the hashed event")
    replay = actions.add_parser("replay", help="put dead letters back on the queue")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--reason", help="every dead letter of this reason")
    which.add_argument("--id", dest="letter_id", help="one dead letter, by id")
    which.add_argument("--all", action="store_true", help="every dead letter")
    purge = actions.add_parser("purge", help="forget old dead letters")
    purge.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m")
    purge.add_argument("--reason", help="only this reason")
    for each in (listing, replay, purge):
        each.add_argument("--account", help="only this ad account's dead letters (PINSIGNAL_ACCOUNTS)")


def _row(letter: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.dead_at))
    message = letter.message if len(letter.message) <= 80 else letter.message[:77] + "..."
    return (f"{letter.id}  {when}Z  {letter.account:<18}  {letter.reason:<11}  {letter.event_name:<16}  "
            f"{letter.event_id:<24}  "
            f"{letter.attempts:>3}  {message}")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from pinsignal.commands.common import older_than as seconds, redis_client
    from pinsignal.config import Config
    from pinsignal.dlq import DeadLetters

    older_than = seconds(args.older_than) if args.action == "purge" else 0.0

    async def main() -> int:
        async with redis_client(Config.from_env()) as redis:
            letters = DeadLetters(redis)
            if args.action == "list":
                found = await letters.recent(reason=args.reason, limit=args.limit or None, account=args.account)
                if args.json:
                    for letter in found:
                        sys.stdout.write(letter.to_json().decode() + "\n")
                    return 0
                if not found:
                    print("no dead letters" + (f" with reason {args.reason!r}" if args.reason else ""))
                    return 0
                print(f"{'id':<16}  {'dead at':<20}  {'account':<18}  {'reason':<11}  {'event_name':<16}  "
                      f"{'event_id':<24}  {'try':>3}  message")
                for letter in found:
                    print(_row(letter))
                return 0
            if args.action == "replay":
                replayed = await letters.replay(reason=None if args.all else args.reason, letter_id=args.letter_id,
                                                account=args.account)
                if args.letter_id and not replayed:
                    print(f"pinsignal dlq replay: no dead letter with id {args.letter_id!r}", file=sys.stderr)
                    return 1
                print(f"replayed {len(replayed)} dead letters onto the queue")
                return 0
            purged = await letters.purge(older_than=older_than, reason=args.reason, account=args.account)
            print(f"purged {purged} dead letters older than {args.older_than}")
            return 0

    return asyncio.run(main())
