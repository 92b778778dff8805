"""Benchmark: the trace stream's memory at its cap, with realistic collector and worker records.

    .venv/bin/python tests/bench/bench_trace_memory.py [--maxlen 20000] [--rounds 400]

The real collector (the bench's app, in-process, real pipelines, the embedded Redis) takes, each
round, 3 batches of 20 and 10 single posts of the bench's order events, as ``bench_collector.py``
posts them; for the events it queued, the worker's records are written as ``DeliveryTrace`` writes
them: a ``sent`` entry and a ``delivered`` entry per 64 events (the Pinterest event kept for one in
64), a ``warning`` record for one event in 4. Then it prints the records and entries the stream
holds, ``MEMORY USAGE`` of the key (``SAMPLES 0``) and how much ``used_memory`` (``INFO memory``)
falls when the stream is deleted. The cap counts records (the rows readers get back), so the figure
does not depend on how many events a request packs into one entry.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_collector as bc  # puts the package on the path

PINTEREST = (b'{"event_name":"checkout","action_source":"web","event_time":1764900000,"event_source_url":'
             b'"https://shop.example/checkout","event_id":"b-1-0","user_data":{"client_ip_address":"127.0.0.1",'
             b'"client_user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/'
             b'124.0 Safari/537.36","em":["86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"],"ph":'
             b'["413ba75461ab5f99d36820e561ea97e2bd80f9cb586f7ecea6cf4c496518950a"],"click_id":"dj0yJnU9Zm9vJm49Y'
             b'mFy"},"custom_data":{"currency":"USD","value":"72.39","content_ids":["sku-1"],"contents":[{"id":'
             b'"sku-1","item_price":"14.99","quantity":3}],"num_items":3,"order_id":"b-1-0"}}')


async def _post(app: Any, template: str, counter: Any) -> list[str]:
    import orjson

    body = template.replace("@N@", str(next(counter))).encode()
    headers = [(key.lower().encode(), value.encode()) for key, value in bc.HEADERS.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/_ps/e", "raw_path": b"/_ps/e", "query_string": b"", "root_path": "",
             "headers": [*headers, (b"host", b"shop.example"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    received = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.sleep(3600)
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 202, sent
    return list(orjson.loads(sent[1]["body"])["accepted"])


async def measure(url: str, maxlen: int, rounds: int) -> dict[str, Any]:
    import orjson
    import redis.asyncio as aioredis

    from pinsignal import keys
    from pinsignal.insight import _DELIVERED, _SENT, BATCH_RECORD, _add_batches
    from pinsignal.trace import TraceWriter, decode_records

    redis = aioredis.Redis.from_url(url)
    await redis.flushall()
    app = bc.build_app("collector", url)
    worker = TraceWriter(redis, maxlen)
    counter = itertools.count()
    pinterest = orjson.Fragment(PINTEREST)
    queued: list[str] = []
    single, batch = bc.single_body(), bc.batch_body()
    for _ in range(rounds):
        for _ in range(3):
            queued += await _post(app, batch, counter)
        for _ in range(10):
            queued += await _post(app, single, counter)
        while len(queued) >= 256:
            chunk, queued = queued[:256], queued[256:]
            now = round(time.time(), 3)
            _add_batches(worker, {"at": now, "stage": "sent", "account": bc.ACCOUNT, "status": 200, "fields": _SENT},
                         [["checkout", ident, 1, "processed", *([pinterest] if n % BATCH_RECORD == 0 else [])]
                          for n, ident in enumerate(chunk)])
            for ident in chunk[::4]:
                worker.add({"at": now, "stage": "warning", "event_name": "checkout", "event_id": ident,
                            "warning": "external_id is missing. We highly recommend this on all events.",
                            "kinds": ["external_id_missing"]})
            _add_batches(worker, {"at": now, "stage": "delivered", "account": bc.ACCOUNT, "fields": _DELIVERED},
                         [["checkout", ident, 1, 0.25, 31] for ident in chunk])
        await worker.flush()
        await app.intake.observer._writer.flush()  # both sides written in step: the steady mix of records
    await app.intake.close()
    await worker.close()
    records = entries = 0
    stages: dict[str, int] = {}
    for entry_id, fields in await redis.xrange(keys.TRACE):
        entries += 1
        for record in decode_records(entry_id, fields):
            records += 1
            stages[record["stage"]] = stages.get(record["stage"], 0) + 1
    usage = int(await redis.memory_usage(keys.TRACE, samples=0) or 0)
    used = int((await redis.info("memory"))["used_memory"])
    await redis.delete(keys.TRACE)
    freed = used - int((await redis.info("memory"))["used_memory"])
    await redis.aclose()
    return {"records": records, "entries": entries, "usage": usage, "freed": freed, "stages": stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maxlen", type=int, default=20_000, help="PINSIGNAL_TRACE_MAXLEN (records)")
    parser.add_argument("--rounds", type=int, default=400, help="rounds of 3 batches of 20 and 10 single posts")
    args = parser.parse_args()
    import os

    os.environ["BENCH_TRACE_MAXLEN"] = str(args.maxlen)  # the collector's cap, read by bench_collector.build_app
    from pinsignal.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory() as folder:
        embedded = EmbeddedRedis(Path(folder) / "redis")
        embedded.ensure_running()
        try:
            found = asyncio.run(measure(embedded.url, args.maxlen, args.rounds))
        finally:
            embedded.stop()
    print(f"trace at a cap of {args.maxlen:,} records: {found['records']:,} records in {found['entries']:,} entries "
          f"({found['stages']}); MEMORY USAGE {found['usage']:,} bytes ({found['usage'] / found['records']:.0f} a "
          f"record); deleting the stream frees {found['freed']:,} bytes of used_memory")
    print("BENCH-JSON " + json.dumps({"figure": f"trace memory at a cap of {args.maxlen:,} records, MB",
                                      "value": round(found["usage"] / 1e6, 2)}))
    return 0 if args.maxlen <= found["records"] <= args.maxlen * 1.06 + 64 else 1


if __name__ == "__main__":
    raise SystemExit(main())
