"""Worker benchmark: events per second delivered by one ``pinsignal worker`` process, and its memory.

    .venv/bin/python tests/bench/bench_worker.py [--events 100000] [--rounds 3] [--million 1000000]
    .venv/bin/python tests/bench/bench_worker.py --callgrind 20000   # instructions per delivered event

Set-up: an embedded Redis in a temporary folder, the local sink (``tests/bench/sink.py``: answers 200
with per-event statuses at once), events queued with the real ``EventQueue``.

- ``worker``: one worker process drains ``--events`` pre-queued events; events/s from the first to
  the last event the sink saw (start-up excluded). Target: at least 20,000.
- ``raw HTTP`` (baseline, same run, interleaved): the bench process itself posting the same 1000-event
  bodies to the sink as fast as 4 concurrent httpx requests allow, with no Redis at all: the ceiling
  of the HTTP leg on this machine.
- memory: a worker delivers ``--million`` events fed continuously by a producer; RSS printed at start
  (after the first 50,000) and at the end. It must stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sink import start_sink  # noqa: E402

from pinsignal import keys  # noqa: E402
from pinsignal.config import Config  # noqa: E402
from pinsignal.embedded import EmbeddedRedis  # noqa: E402
from pinsignal.queue import EventQueue  # noqa: E402
from support import pinsignal_cmd, run_process  # noqa: E402

ACCOUNT = "549755885175"
HASH = hashlib.sha256(b"person@example.com").hexdigest()


def event(n: int, run: str) -> dict[str, Any]:
    return {
        "event_name": "checkout", "action_source": "web", "event_time": int(time.time()),
        "event_id": f"{run}-{n}",
        "event_source_url": "https://shop.example/checkout",
        "user_data": {"em": [HASH], "ph": [HASH], "external_id": [HASH], "click_id": "dj0yJnU9bW9jay1lcGlr",
                      "client_ip_address": "203.0.113.9",
                      "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari"},
        "custom_data": {"currency": "USD", "value": "72.39", "content_ids": ["sku-1", "sku-2"], "num_items": 3},
    }


async def fill(url: str, count: int, run: str, *, keep_below: int | None = None) -> None:
    queue = await EventQueue.connect(Config(redis_url=url, ad_account_id=ACCOUNT))
    try:
        chunk = 2000
        for start in range(0, count, chunk):
            if keep_below is not None:
                while await queue.redis.xlen(keys.stream(ACCOUNT)) > keep_below:
                    await asyncio.sleep(0.02)
            await asyncio.gather(*[queue.enqueue([event(n, run) for n in range(s, min(s + 500, count))])
                                   for s in range(start, min(start + chunk, count), 500)])
    finally:
        await queue.close()


_STATS = httpx.Client(timeout=10)  # one client: building one per poll costs more CPU than the worker


def sink_stats(url: str) -> dict[str, int]:
    return dict(_STATS.get(url + "/_sink/stats").json())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_env(redis_url: str, sink_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": ACCOUNT, "PINTEREST_ACCESS_TOKEN": "bench-token",
            "PINTEREST_API_URL": sink_url}


def measure_worker(redis_url: str, sink_url: str, count: int, run: str, log: Path) -> float:
    asyncio.run(fill(redis_url, count, run))
    base = sink_stats(sink_url)["events"]
    with run_process(pinsignal_cmd("--log-level", "warning", "worker"), env=worker_env(redis_url, sink_url),
                     log=log):
        first = None
        while True:
            seen = sink_stats(sink_url)["events"] - base
            now = time.perf_counter()
            if seen > 0 and first is None:
                first = (now, seen)
            if seen >= count:
                break
            time.sleep(0.02)
    assert first is not None
    return (count - first[1]) / (now - first[0])


def measure_raw(sink_url: str, seconds: float = 3.0) -> float:
    body = b'{"data":[' + b",".join(orjson.dumps(event(n, "raw")) for n in range(1000)) + b"]}"

    async def main() -> float:
        sent = 0
        async with httpx.AsyncClient(headers={"Authorization": "Bearer x", "Content-Type": "application/json"}) as c:
            deadline = time.perf_counter() + seconds
            started = time.perf_counter()

            async def loop() -> None:
                nonlocal sent
                while time.perf_counter() < deadline:
                    response = await c.post(f"{sink_url}/v5/ad_accounts/{ACCOUNT}/events", content=body)
                    orjson.loads(response.content)
                    sent += 1000

            await asyncio.gather(*[loop() for _ in range(4)])
            return sent / (time.perf_counter() - started)

    return asyncio.run(main())


def measure_memory(redis_url: str, sink_url: str, total: int, log: Path) -> tuple[float, float, float, float]:
    base = sink_stats(sink_url)["events"]
    with run_process(pinsignal_cmd("--log-level", "warning", "worker"), env=worker_env(redis_url, sink_url),
                     log=log) as worker:
        time.sleep(1.0)
        at_launch = rss_mb(worker.pid)
        producer = subprocess.Popen([sys.executable, __file__, "--produce", str(total), "--redis", redis_url])
        started = time.perf_counter()
        at_start = None
        while True:
            seen = sink_stats(sink_url)["events"] - base
            if at_start is None and seen >= 50_000:
                at_start = rss_mb(worker.pid)
            if seen >= total:
                break
            if producer.poll() not in (None, 0):
                raise RuntimeError("the producer failed")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        at_end = rss_mb(worker.pid)
        producer.wait(30)
    return at_launch, at_start or float("nan"), at_end, total / elapsed


def callgrind_worker(redis_url: str, sink_url: str, count: int, log: Path) -> float:
    """Instructions the worker process spends per delivered event, under valgrind: ``count`` + 2,000
    events queued before it starts (so every batch is full, as in a backlog), counters zeroed once
    2,000 are delivered and dumped when the rest are, idle ticks (measured after) subtracted."""
    from loadgen import instructions

    folder = log.parent / "callgrind"
    folder.mkdir()
    out = folder / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               *pinsignal_cmd("--log-level", "warning", "worker")]
    env = {**worker_env(redis_url, sink_url), "PYTHONHASHSEED": "0"}
    base = sink_stats(sink_url)["events"]
    asyncio.run(fill(redis_url, count + 2000, "cg"))

    def delivered_at_least(events: int) -> None:
        while sink_stats(sink_url)["events"] - base < events:
            time.sleep(0.05)

    with run_process(command, env=env, log=log) as process:
        delivered_at_least(2000)
        total, elapsed = instructions(process.pid, folder, lambda: delivered_at_least(count + 2000))
        idle, idle_seconds = instructions(process.pid, folder, lambda: time.sleep(3))
    return (total - idle / idle_seconds * elapsed) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--callgrind", type=int, metavar="EVENTS", default=0,
                        help="only count the worker's instructions per delivered event (valgrind), over EVENTS")
    parser.add_argument("--produce", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:  # the memory run's producer, in its own process so it does not share our CPU budget
        asyncio.run(fill(args.redis, args.produce, "mem", keep_below=50_000))
        return

    with tempfile.TemporaryDirectory(prefix="ps-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.ensure_running()
        try:
            with start_sink() as sink_url:
                if args.callgrind:
                    per_event = callgrind_worker(server.url, sink_url, args.callgrind, Path(tmp) / "worker-cg.log")
                    maxlen = os.environ.get("PINSIGNAL_TRACE_MAXLEN", "default")
                    print(f"callgrind: {per_event:,.0f} instructions per delivered event (worker process, "
                          f"{args.callgrind:,} events, trace maxlen {maxlen})")
                    return
                worker_rates: list[float] = []
                raw_rates: list[float] = []
                for round_ in range(args.rounds):
                    raw_rates.append(measure_raw(sink_url))
                    worker_rates.append(measure_worker(server.url, sink_url, args.events, f"r{round_}",
                                                       Path(tmp) / f"worker-{round_}.log"))
                    print(f"  round {round_ + 1}: worker {worker_rates[-1]:,.0f} events/s, "
                          f"raw HTTP {raw_rates[-1]:,.0f} events/s", flush=True)
                worker_rate, raw_rate = statistics.median(worker_rates), statistics.median(raw_rates)
                launch, start, end, mem_rate = measure_memory(server.url, sink_url, args.million,
                                                              Path(tmp) / "worker-mem.log")
        finally:
            server.stop()

    print()
    print(f"{'figure':<52} {'value':>14} {'baseline':>14} {'ratio':>7}")
    print(f"{'worker events/s (median of ' + str(args.rounds) + ', 1000-event batches)':<52} "
          f"{worker_rate:>14,.0f} {raw_rate:>14,.0f} {worker_rate / raw_rate:>7.2f}")
    print(f"{'worker events/s vs target 20,000':<52} {worker_rate:>14,.0f} {20_000:>14,} "
          f"{worker_rate / 20_000:>7.2f}")
    print(f"{'worker RSS MB: launch / after 50k / after ' + format(args.million, ',')} "
          f"{launch:.0f} / {start:.0f} / {end:.0f}  (growth after warm-up {end - start:+.0f} MB)")
    print(f"{'events/s during the memory run (producer-bound)':<52} {mem_rate:>14,.0f}")
    print(f"(baseline = the bench process posting the same bodies to the sink with 4 concurrent httpx requests, "
          f"no Redis; cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
