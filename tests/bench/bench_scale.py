"""Benchmark: events per second delivered by 1, 2 and 4 worker processes over 3 ad accounts.

    .venv/bin/python tests/bench/bench_scale.py [--events 60000] [--workers 1,2,4] [--rounds 2]

One Redis (the embedded redis-server, ``appendfsync always``), the sink (``sink.py``, which answers
every call at once), and ``pinsignal worker`` processes delivering 3 accounts (``PINSIGNAL_ACCOUNTS``:
the default account and two routed ones, each with its own token variable). Each round queues
``--events`` events per account (3 x 60,000 by default, 1,000-event batches, as Pinterest takes
them), starts the workers, and measures from the first event the sink receives to the last. Printed
per worker count: events/s delivered, the CPU seconds the workers, Redis and the sink used per
100,000 events, and the machine's idle share during the run, which say where the limit sits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sink import start_sink  # noqa: E402

from pinsignal.config import Config  # noqa: E402
from pinsignal.embedded import EmbeddedRedis  # noqa: E402
from pinsignal.queue import EventQueue  # noqa: E402
from support import pinsignal_cmd, run_process  # noqa: E402

ACCOUNTS = ("549755885175", "549755885176", "549755885177")  # the default, then the file's two
HASH = hashlib.sha256(b"person@example.com").hexdigest()


def event(n: int, run: str) -> dict[str, Any]:
    return {
        "event_name": "checkout", "action_source": "web", "event_time": int(time.time()),
        "event_id": f"{run}-{n}", "event_source_url": "https://shop.example/checkout",
        "user_data": {"em": [HASH], "ph": [HASH], "external_id": [HASH], "click_id": "dj0yJnU9bW9jay1lcGlr",
                      "client_ip_address": "203.0.113.9",
                      "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari"},
        "custom_data": {"currency": "USD", "value": "72.39", "content_ids": ["sku-1", "sku-2"], "num_items": 3},
    }


async def fill(url: str, per_account: int, run: str) -> None:
    queue = await EventQueue.connect(Config(redis_url=url))
    try:
        for account in ACCOUNTS:
            for start in range(0, per_account, 2000):
                await asyncio.gather(*[queue.enqueue([event(n, f"{run}-{account}") for n in range(s, min(s + 500,
                                                     per_account))], account=account)
                                       for s in range(start, min(start + 2000, per_account), 500)])
    finally:
        await queue.close()


def accounts_file(folder: Path) -> Path:
    path = folder / "accounts.yaml"
    path.write_text("accounts:\n" + "".join(
        f'  - id: "{account}"\n    token_env: BENCH_TOKEN_{index}\n    match: {{hosts: [shop{index}.example]}}\n'
        for index, account in enumerate(ACCOUNTS[1:], 1)))
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_seconds() -> float:
    """Idle CPU seconds of the machine so far, every core summed (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


def sink_pid(port: int) -> int | None:
    """The sink's process id, found by its listening port (its own command line names the port)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().split(b"\0")
                if any(part.endswith(b"sink.py") for part in command) and str(port).encode() in command:
                    return int(entry.name)
    return None


def measure(redis: EmbeddedRedis, sink_url: str, workers: int, per_account: int, run: str,
            folder: Path) -> dict[str, float]:
    asyncio.run(fill(redis.url, per_account, run))
    total = per_account * len(ACCOUNTS)
    stats = httpx.Client(timeout=10)
    base = stats.get(sink_url + "/_sink/stats").json()["events"]
    env = {"REDIS_URL": redis.url, "PINTEREST_AD_ACCOUNT_ID": ACCOUNTS[0], "PINTEREST_ACCESS_TOKEN": "bench-token",
           "PINTEREST_API_URL": sink_url, "PINSIGNAL_ACCOUNTS": str(accounts_file(folder)),
           "BENCH_TOKEN_1": "bench-token-1", "BENCH_TOKEN_2": "bench-token-2", "PINSIGNAL_TRACE_MAXLEN": "0"}
    sink = sink_pid(int(sink_url.rsplit(":", 1)[1]))
    assert redis.process is not None and sink is not None
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(run_process(pinsignal_cmd("--log-level", "warning", "worker"), env=env,
                                                 log=folder / f"{run}-worker-{n}.log")) for n in range(workers)]
        first: tuple[float, int] | None = None
        while True:
            seen = stats.get(sink_url + "/_sink/stats").json()["events"] - base
            now = time.perf_counter()
            if seen > 0 and first is None:
                first = (now, seen)
                cpu_start = ([cpu_seconds(p.pid) for p in procs], cpu_seconds(redis.process.pid), cpu_seconds(sink),
                             idle_seconds())
            if seen >= total:
                break
            time.sleep(0.05)
        assert first is not None
        cpu_end = ([cpu_seconds(p.pid) for p in procs], cpu_seconds(redis.process.pid), cpu_seconds(sink),
                   idle_seconds())
    elapsed = now - first[0]
    done = total - first[1]
    per = 100_000 / done
    return {"rate": done / elapsed,
            "workers_cpu": (sum(cpu_end[0]) - sum(cpu_start[0])) * per,
            "redis_cpu": (cpu_end[1] - cpu_start[1]) * per,
            "sink_cpu": (cpu_end[2] - cpu_start[2]) * per,
            "idle": (cpu_end[3] - cpu_start[3]) / (elapsed * (os.cpu_count() or 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events queued per account and round")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]
    results: dict[int, list[dict[str, float]]] = {count: [] for count in counts}
    with tempfile.TemporaryDirectory(prefix="ps-scale-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.ensure_running()
        try:
            with start_sink() as sink_url:
                for round_ in range(args.rounds):
                    for count in counts:  # interleaved, so a busy spell of the machine hits every column
                        figures = measure(redis, sink_url, count, args.events, f"r{round_}w{count}", Path(tmp))
                        results[count].append(figures)
                        print(f"  round {round_ + 1}, {count} worker(s): {figures['rate']:,.0f} events/s", flush=True)
        finally:
            redis.stop()
    print()
    print(f"single Redis, 3 accounts, {args.events:,} events each, median of {args.rounds} "
          f"(cpus: {os.cpu_count()}; CPU seconds per 100,000 events)")
    print(f"{'workers':>7} {'events/s':>10} {'workers CPU':>12} {'Redis CPU':>10} {'sink CPU':>9} {'idle':>6}")
    for count in counts:
        rows = results[count]

        def median(name: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(row[name] for row in rows)

        print(f"{count:>7} {median('rate'):>10,.0f} {median('workers_cpu'):>12.2f} {median('redis_cpu'):>10.2f} "
              f"{median('sink_cpu'):>9.2f} {median('idle'):>6.0%}")
    one = statistics.median(row["rate"] for row in results[counts[0]])
    for count in counts:  # for run_all.py: each worker count against the first one's rate
        rate = statistics.median(row["rate"] for row in results[count])
        print("BENCH-JSON " + json.dumps({"figure": f"scale: {count} worker(s), 3 accounts, events/s",
                                          "value": round(rate), "baseline": round(one), "ratio": round(rate / one, 3)}))


if __name__ == "__main__":
    main()
