"""How many events per second the sandbox accepts in batches of 1000, against the bare sink as baseline.

    .venv/bin/python tests/bench/bench_sandbox.py [--batches 40] [--rounds 3] [--connections 2]

Both servers run as their own processes (``pinsignal sandbox`` and ``tests/bench/sink.py``); this
process sends pre-encoded bodies of 1000 realistic, valid events (unique ids, so dedup does real
work) over keep-alive connections. Runs are interleaved and the medians reported, since the machine
is shared. Also prints the sandbox's RSS after the runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sink import start_sink

from support import free_port, pinsignal_cmd, run_process

HEADERS = {"authorization": "Bearer sandbox-token", "content-type": "application/json"}


def event(number: int, now: int) -> dict[str, Any]:
    return {
        "event_name": "checkout", "action_source": "web", "event_time": now, "event_id": f"bench-{number}",
        "event_source_url": "https://shop.example/checkout?epik=dj0yJnU9b2JDcFFHekV4SHJNcmVr",
        "user_data": {
            "em": ["411e44ce1261728ffd2c0686e44e3fffe413c0e2c5adc498bc7da883d476b9c8"],
            "ph": ["45df139772a81b6011bdc1c9cc3d1cb408fc0b10ec0c5cb9d4d4e107f0ddc49d"],
            "external_id": ["6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"],
            "client_ip_address": "203.0.113.9",
            "client_user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0",
            "click_id": "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0akdUT1VjVVUmcD0yJm49cnNBQ3F2Q2dOVDBXWWhkWklrUGxBUSZ0",
        },
        "custom_data": {"currency": "USD", "value": "72.39", "content_ids": ["sku-1"],
                        "contents": [{"id": "sku-1", "item_price": "14.99", "quantity": 3}], "num_items": 3,
                        "order_id": f"order-{number}"},
    }


def bodies(start: int, batches: int) -> list[bytes]:
    now = int(time.time())
    return [orjson.dumps({"data": [event(start + b * 1000 + i, now) for i in range(1000)]}) for b in range(batches)]


def run(url: str, payloads: list[bytes], connections: int) -> float:
    """Events per second for sending every payload, spread over ``connections`` threads."""
    errors: list[str] = []

    def worker(share: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for body in share:
                response = client.post("/v5/ad_accounts/549755885175/events", content=body, headers=HEADERS)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker, args=(payloads[i::connections],)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"unexpected answers: {errors[:3]}")
    return len(payloads) * 1000 / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (robust to other load on a shared machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    sandbox_rates: list[float] = []
    sink_rates: list[float] = []
    sandbox_cpu: list[float] = []
    with start_sink() as sink_url, run_process(pinsignal_cmd("sandbox", "--port", str(port),
                                                             "--calls-per-minute", "1000000"), port=port) as proc:
        sandbox_url = f"http://127.0.0.1:{port}"
        run(sandbox_url, bodies(10**8, 2), 1)  # warm up both
        run(sink_url, bodies(10**8, 2), 1)
        for round_number in range(args.rounds):
            payloads = bodies(round_number * args.batches * 1000, args.batches)
            cpu_before = cpu_seconds(proc.pid)
            sandbox_rates.append(run(sandbox_url, payloads, args.connections))
            sandbox_cpu.append(len(payloads) * 1000 / (cpu_seconds(proc.pid) - cpu_before))
            sink_rates.append(run(sink_url, payloads, args.connections))
        stats = httpx.get(f"{sandbox_url}/_sandbox/stats").json()
        rss = rss_mb(proc.pid)
    sandbox_median, sink_median = statistics.median(sandbox_rates), statistics.median(sink_rates)
    print(f"batches of 1000 events, {args.batches} batches x {args.rounds} rounds, "
          f"{args.connections} connections (medians)")
    print(f"{'server':<28}{'events/s':>12}{'ratio':>8}")
    print(f"{'sink (baseline)':<28}{sink_median:>12,.0f}{1.0:>8.2f}")
    print(f"{'pinsignal sandbox':<28}{sandbox_median:>12,.0f}{sandbox_median / sink_median:>8.2f}")
    print(f"{'sandbox per CPU-second':<28}{statistics.median(sandbox_cpu):>12,.0f}"
          "   (events per second of the sandbox process's own CPU time: what one free core gives)")
    print(f"target: sandbox >= 20,000 events/s; sandbox recorded {stats['events_recorded']:,} events, "
          f"RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
