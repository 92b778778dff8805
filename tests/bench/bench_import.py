"""Benchmark: ``pinsignal import`` rows per second into the queue, on one core.

    .venv/bin/python tests/bench/bench_import.py [--rows 100000] [--rounds 3]

A CSV of ``--rows`` store sales is imported into a real (embedded) Redis: the rows are read,
mapped, hashed and validated by the shipped pipelines, checked against the import's marks, queued
and marked. The pipelines and the Redis connection are ready before the clock starts, as in a long
import. Each round imports a new file (new order ids), so nothing is a duplicate; a last round
imports the first file again (every row a duplicate). Rates are rows per wall-clock second and per
CPU-second of this process (the importer is single-threaded; Redis runs in its own process).
Target: at least 20,000 rows/s.

Two files: ``typical`` rows (order id, email, phone, value, currency, time, two product ids: what a
point-of-sale export has) and ``full`` rows (the same plus first and last name, city, state, zip and
country: eight hashed match keys a row). Every row has its own order id, email and phone, so no
normalisation cache helps.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pinsignal.config import Config
from pinsignal.embedded import EmbeddedRedis
from pinsignal.offline import ImportOptions, import_file
from pinsignal.pipeline import Engine
from pinsignal.queue import EventQueue

TARGET = 20_000


def write_sales(path: Path, rows: int, prefix: str, full: bool = True) -> None:
    now = int(time.time())
    names = ["first_name", "last_name", "city", "state", "zip", "country"] if full else []
    person = ["Jane", "Doe", "San Francisco", "CA", "94103", "US"] if full else []
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["order_id", "email", "phone", *names, "value", "currency", "timestamp", "content_ids"])
        for n in range(rows):
            moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600 - n % 86000))
            phone = f"+1 (415) {200 + n % 800:03d}-{n % 10000:04d}"
            out.writerow([f"{prefix}-{n}", f" Customer.{n}@Example.com ", phone, *person, f"{10 + n % 500}.99",
                          "USD", moment, f"sku-{n % 50}|sku-{n % 7}"])


async def rounds(rows: int, count: int, folder: Path, url: str, full: bool) -> tuple[list[float], list[float], float]:
    config = Config(secret="bench-secret-0123456789", redis_url=url)
    engine = Engine.from_config(config)
    queue = await EventQueue.connect(config)
    walls: list[float] = []
    cpus: list[float] = []
    first: Path | None = None
    try:
        for index in range(count):
            kind = "full" if full else "typical"
            path = folder / f"sales-{kind}-{index}.csv"
            write_sales(path, rows, f"{kind}{index}", full)
            first = first or path
            wall, cpu = time.perf_counter(), time.process_time()
            summary = await import_file(ImportOptions(path=path), config, queue=queue, engine=engine)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert summary.queued == rows and not summary.refused, summary.to_dict()
            walls.append(rows / wall)
            cpus.append(rows / cpu)
            print(f"{kind} round {index + 1}: {rows / wall:,.0f} rows/s wall, {rows / cpu:,.0f} rows/CPU-s", flush=True)
        assert first is not None
        wall = time.perf_counter()
        again = await import_file(ImportOptions(path=first, restart=True), config, queue=queue, engine=engine)
        wall = time.perf_counter() - wall
        assert again.duplicates == rows and again.queued == 0, again.to_dict()
    finally:
        await queue.close()
    return walls, cpus, rows / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        redis = EmbeddedRedis(folder / "redis")
        redis.ensure_running()
        try:
            results = {kind: asyncio.run(rounds(args.rows, args.rounds, folder, redis.url, kind == "full"))
                       for kind in ("typical", "full")}
        finally:
            redis.stop()
    for kind, (walls, cpus, again) in results.items():
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(f"import, {kind} rows: {wall:,.0f} rows/s wall-clock (median of {len(walls)}), {cpu:,.0f} rows per "
              f"CPU-second; the same file again (every row a duplicate): {again:,.0f} rows/s; target >= {TARGET:,}")
        for figure, value in ((f"import rows/s into the queue, {kind} rows (wall clock)", wall),
                              (f"import rows per CPU-second, {kind} rows", cpu),
                              (f"re-import of the same {kind} rows, rows/s", again)):
            print("BENCH-JSON " + json.dumps({"figure": figure, "value": round(value), "target": f">= {TARGET:,}",
                                              "pass": value >= TARGET}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
