"""Benchmark: what ``remember()`` and ``Tracker.track(visitor_key=...)`` cost per call.

    .venv/bin/python tests/bench/bench_visitors.py [--calls 5000]

``remember(request, key)`` for a returning visitor (``_epik``, a signed ``_psid`` and a ``_psu`` with
two hashed keys, a ``Referer``), and ``Tracker.track("order_completed", visitor_key=key, ...)`` for
an order with two products and an email, through the shipped pipelines. Each is measured twice: with
the in-memory store and sink (the Python work alone), and against a real embedded Redis (one ``SET``
for ``remember``; a ``GET``, the counter and the enqueue script for ``track``), one call after the
other (so the wall time includes each round trip) and 100 at a time (what a busy web process sees).
Figures are microseconds per call: CPU time of this process, and wall-clock time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

from pinsignal import Config, MemorySink, PinSignalMiddleware, Tracker, remember
from pinsignal.cookies import DeviceIds, IdentityCookie
from pinsignal.embedded import EmbeddedRedis
from pinsignal.pipeline import Engine
from pinsignal.visitors import MemoryVisitors

SECRET = "bench-secret-0123456789abcdef"
UA = (b"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
      b"Version/17.5 Safari/605.1.15")


async def _app(request: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def _scope(app: PinSignalMiddleware, cookie: bytes) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/checkout", "raw_path": b"/checkout", "query_string": b"",
            "scheme": "https", "server": ("shop.example", 443), "client": ("203.0.113.9", 50000),
            "headers": [(b"host", b"shop.example"), (b"user-agent", UA), (b"cookie", cookie),
                        (b"referer", b"https://shop.example/cart")], "pinsignal": app}


async def _measure(calls: int, one: Callable[[int], Awaitable[Any]], parallel: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, calls, parallel):
        await asyncio.gather(*(one(n) for n in range(start, min(calls, start + parallel))))
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def run(calls: int, redis_url: str) -> list[tuple[str, float, float]]:
    engine = Engine.from_config(Config())
    results: list[tuple[str, float, float]] = []
    cookie = ("_epik=dj0yJnU9YmVuY2gmcD0x; _psid=" + DeviceIds(SECRET).mint()[1] + "; _psu="
              + IdentityCookie(SECRET).dumps({"email": "a" * 64, "phone": "b" * 64})).encode()
    for where in ("memory", "redis"):
        memory = where == "memory"
        config = Config(secret=SECRET, redis_url=None if memory else redis_url)
        app = PinSignalMiddleware(_app, config=config, engine=engine, **({"sink": MemorySink()} if memory else {}))
        tracker = Tracker(config, engine=engine, **({"sink": MemorySink()} if memory else {}))
        if memory:
            tracker.intake.visitors = app.intake.visitors = MemoryVisitors(config)
        await app.intake.open()
        await tracker.intake.open()
        for parallel in (1, 100):
            async def remember_one(n: int, parallel: int = parallel, app: PinSignalMiddleware = app) -> Any:
                return await remember(Request(_scope(app, cookie)), f"cart-{parallel}-{n}")

            async def track_one(n: int, parallel: int = parallel, tracker: Tracker = tracker, where: str = where
                                ) -> Any:
                result = await tracker.track("order_completed", visitor_key=f"cart-{parallel}-{n}",
                                             properties={"order_id": f"o-{where}-{parallel}-{n}", "revenue": 53.98,
                                                         "currency": "USD", "products": [
                                                             {"product_id": "sku-101", "quantity": 2, "price": 14.99},
                                                             {"product_id": "sku-201", "quantity": 1, "price": 24.0}]},
                                             traits={"email": f"buyer{n}@example.com"}, timestamp=time.time() - 60)
                assert result.queued and result.visitor_known, result
                return result

            await _measure(min(200, calls), remember_one, parallel)  # warm up
            cpu, wall = await _measure(calls, remember_one, parallel)
            results.append((f"remember() [{where}, {parallel} at a time]", cpu, wall))
            cpu, wall = await _measure(calls, track_one, parallel)
            results.append((f"Tracker.track(visitor_key=...) [{where}, {parallel} at a time]", cpu, wall))
        await tracker.close()
        await app.intake.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp))
        redis.ensure_running()
        try:
            results = asyncio.run(run(args.calls, redis.url))
        finally:
            redis.stop()
    for name, cpu, wall in results:
        print(f"{name:<58} {cpu:8.1f} us CPU per call, {wall:8.1f} us wall")
        print("BENCH-JSON " + json.dumps({"figure": f"{name}, us CPU per call", "value": round(cpu, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
