"""End to end: browser post -> collector -> Redis -> worker -> sandbox; latency, and scaling by worker count.

    .venv/bin/python tests/bench/bench_e2e.py [--events 5000] [--rate 200] [--backlog 40000] [--workers 1,2,4]

Everything is real and separate: the web process (uvicorn + PinSignalMiddleware), the embedded
Redis, ``pinsignal worker`` processes and the sandbox (``pinsignal sandbox``), as the fault suite
runs them (``tests/faults/fault_harness.py``).

- latency: single-event posts at ``--rate`` events/s (light load); for each event, the time from
  the collector's 202 to the sandbox recording it. p50 and p99 (DESIGN 6: no event waits more than
  about a second for its batch under light load).
- scaling: ``--backlog`` events queued while no worker runs, then 1, 2, 4 workers (4 delivery
  loops each) drain it into the sandbox; events/s from the first to the last recorded event.
  The baseline of each row is the 1-worker rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "middleware"), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

import httpx  # noqa: E402
import orjson  # noqa: E402
from fault_harness import Stack, Stream, make_event  # noqa: E402


def bench_json(figure: str, value: float, baseline: float | None = None, ratio: float | None = None,
               target: str = "", passed: bool | None = None) -> None:
    print("BENCH-JSON " + json.dumps({"figure": figure, "value": round(value, 4), "baseline": baseline,
                                      "ratio": ratio, "target": target, "pass": passed}))


def records(stack: Stack) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    since = 0
    with httpx.Client(base_url=stack.sandbox_url, trust_env=False, timeout=60) as http:
        while True:
            page = http.get("/_sandbox/events", params={"since": since, "limit": 50_000}).json()["events"]
            if not page:
                return found
            found += page
            since = int(page[-1]["seq"])


async def post_singly(url: str, count: int, rate: float, run: str) -> dict[str, float]:
    """Single-event posts at ``rate``/s; returns message id -> wall time of its 202."""
    answered: dict[str, float] = {}
    started = time.monotonic()
    headers = {"content-type": "text/plain", "user-agent": "Mozilla/5.0 (bench)"}
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30,
                                 limits=httpx.Limits(max_connections=8)) as http:

        indexes = iter(range(count))

        async def poster() -> None:
            # A few connections posting on a schedule; a slow server makes the rate lower, not the queue longer.
            for index in indexes:
                await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
                response = await http.post("/_ps/e", content=orjson.dumps(make_event(run, index)), headers=headers)
                if response.status_code == 202:
                    answered[f"{run}-{index}"] = time.time()

        await asyncio.gather(*(poster() for _ in range(8)))
    return answered


def latency(root: Path, events: int, rate: float) -> tuple[float, float, int]:
    with Stack(root) as stack:
        stack.add_worker()
        time.sleep(3)  # the worker's start-up is not part of an event's latency
        answered = asyncio.run(post_singly(stack.web_url, events, rate, "lat"))
        deadline = time.monotonic() + 60
        while stack.client.stats()["events_recorded"] < len(answered) and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = {str(r["event"]["event_id"]): float(r["received_at"]) for r in records(stack)}  # type: ignore[index]
    waits = sorted(seen[m] - at for m, at in answered.items() if m in seen)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return statistics.median(waits), p99, len(waits)


def drain(root: Path, backlog: int, workers: int) -> float:
    with Stack(root) as stack:
        stream = Stream(stack.web_url, backlog, rate=50_000, connections=4, run=f"w{workers}")
        asyncio.run(stream.send())
        for _ in range(workers):
            stack.add_worker()
        deadline = time.monotonic() + 300
        while stack.client.stats()["events_recorded"] < backlog and time.monotonic() < deadline:
            time.sleep(0.2)
        times = sorted(float(r["received_at"]) for r in records(stack))  # type: ignore[arg-type]
    if len(times) < backlog:
        raise SystemExit(f"only {len(times)} of {backlog} events were delivered by {workers} worker(s)")
    return backlog / max(1e-6, times[-1] - times[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--backlog", type=int, default=40_000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ps-e2e-") as tmp:
        p50, p99, measured = latency(Path(tmp) / "latency", args.events, args.rate)
        rates = {n: drain(Path(tmp) / f"drain-{n}", args.backlog, n) for n in map(int, args.workers.split(","))}
    print(f"\nend to end, {measured} single-event posts at {args.rate:g}/s: 202 -> recorded by the sandbox")
    print(f"{'figure':<44} {'value':>10} {'baseline':>10} {'ratio':>7}")
    print(f"{'latency p50 (s)':<44} {p50:>10.3f}")
    print(f"{'latency p99 (s)':<44} {p99:>10.3f}")
    one = rates[min(rates)]
    for workers, rate in rates.items():
        print(f"{f'{workers} worker(s) draining {args.backlog:,} events, events/s':<44} {rate:>10,.0f} "
              f"{one:>10,.0f} {rate / one:>7.2f}")
    bench_json("end-to-end latency p50, s (light load)", p50, target="~1 s batch wait", passed=p50 <= 1.5)
    bench_json("end-to-end latency p99, s (light load)", p99, target="<= 2 s", passed=p99 <= 2.0)
    for workers, rate in rates.items():
        bench_json(f"{workers} worker(s) -> sandbox, events/s (vs 1 worker)", rate, round(one), round(rate / one, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
