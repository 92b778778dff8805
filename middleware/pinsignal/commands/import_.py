"""``pinsignal import FILE``: offline conversions from CSV or JSON Lines (DESIGN 8.2, docs/offline.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="a CSV file with a header line, or JSON Lines")
    parser.add_argument("--format", dest="fmt", choices=["csv", "jsonl"], default=None,
                        help="the file's format (default: by extension; .jsonl/.ndjson are JSON Lines)")
    parser.add_argument("--map", dest="maps", action="append", default=[], metavar="COLUMN=PATH",
                        help="map a column to an envelope path, e.g. order_no=properties.order_id "
                             "(repeatable; '-' ignores a column); see docs/offline.md for the defaults")
    parser.add_argument("--event", default="order_completed",
                        help="event name for rows without an event column (default: %(default)s)")
    parser.add_argument("--restart", action="store_true",
                        help="start from the first row even if an earlier run was interrupted "
                             "(rows already imported are still duplicates)")
    parser.add_argument("--account", metavar="ID", default=None,
                        help="send every row to this ad account (PINTEREST_AD_ACCOUNT_ID or an id of "
                             "PINSIGNAL_ACCOUNTS) instead of routing each row as the collector would")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import asyncio

    import orjson
    from tqdm import tqdm

    from pinsignal.config import Config
    from pinsignal.offline import ImportOptions, import_file, parse_map, text_summary

    options = ImportOptions(path=args.file, fmt=args.fmt, mapping=parse_map(args.maps), event=args.event,
                            restart=args.restart, account=args.account)
    bar = tqdm(unit=" rows", disable=not sys.stderr.isatty(), file=sys.stderr, desc=args.file.name)
    last = 0

    def advance(rows: int) -> None:
        nonlocal last
        bar.update(rows - last)
        last = rows

    try:
        summary = asyncio.run(import_file(options, Config.from_env(), progress=advance))
    finally:
        bar.close()
    if args.json:
        print(orjson.dumps(summary.to_dict()).decode())
    else:
        print(text_summary(summary), end="")
    return 1 if summary.refused else 0
