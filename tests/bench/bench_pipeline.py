"""Benchmark: events per second through the pipeline path, on one core.

    .venv/bin/python tests/bench/bench_pipeline.py [--rounds 7] [--events 20000] [--callgrind]

Per event: ``parse_envelope`` (envelope validation, clock-skew correction) + ``Engine.process``
with the shipped pipelines (only ``checkout`` fires: three hashed keys from email, phone and user
id, two products to ``content_ids``/``contents``, money and counts coerced) + v5 validation of
the produced event (``validate: true``). The input is an ``order_completed`` dict as the collector
has it after JSON decoding.

Two populations: ``new visitors`` (every event has its own email, phone and user id, so the
phone-parse cache never hits; the worst case) and ``returning visitors`` (500 visitors sending
many events each, which is what a shop sees). The baseline, measured in the same rounds, is
``json.loads`` of the same event's JSON text. Rounds are interleaved and medians reported.
Target: at least 20,000 events per second for the pipeline path.

Rates are events per CPU-second of this (single-threaded) process, which is what "per core"
means and what a machine shared with other work cannot inflate by descheduling us; the wall-clock
rate is printed beside it. ``--callgrind`` adds instructions per event under valgrind (set-up
subtracted), which no neighbour on a shared machine can blur.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from pinsignal.config import shipped_pipelines_dir
from pinsignal.events import parse_envelope
from pinsignal.pipeline import Engine, RequestContext, load_pipelines

TARGET = 20_000


def make_events(count: int, visitors: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    people = [
        {
            "email": f" Visitor.{n}@Example.com ",
            "phone": f"+1 ({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            "user_id": f"U-{n}",
        }
        for n in range(visitors)
    ]
    now = time.time()
    events = []
    for n in range(count):
        person = people[n % visitors]
        events.append({
            "type": "track", "event": "order_completed", "messageId": f"order-{n}", "anonymousId": f"anon-{n}",
            "userId": person["user_id"], "timestamp": now - 5, "sentAt": now - 4,
            "properties": {
                "order_id": f"o-{n}", "revenue": 53.98, "currency": "USD",
                "products": [{"product_id": "sku-101", "price": 14.99, "quantity": 2, "name": "Mug"},
                             {"product_id": "sku-201", "price": 24.0, "quantity": 1, "name": "Bowl"}],
            },
            "traits": {"email": person["email"], "phone": person["phone"]},
            "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                        "page": {"url": "https://shop.example/checkout", "title": "Checkout"}},
        })
    return events


def timed(work: Callable[[], int]) -> tuple[float, float]:
    """Events per CPU second and per wall second of one pass of ``work`` (which returns a count)."""
    wall, cpu = time.perf_counter(), time.process_time()
    handled = work()
    return handled / (time.process_time() - cpu), handled / (time.perf_counter() - wall)


def one_pass(mode: str, count: int) -> None:
    """What --callgrind measures: set-up only ("none"), json.loads, or the pipeline path, once."""
    engine = Engine(load_pipelines(shipped_pipelines_dir()))
    request = RequestContext(cookies={"_epik": "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0"})
    events = make_events(count, visitors=count)
    texts = [json.dumps(event) for event in events]
    received = time.time()
    if mode == "json":
        for text in texts:
            json.loads(text)
    elif mode == "pipeline":
        for raw in events:
            engine.process(parse_envelope(raw, received_at=received), request, now=received)


def callgrind(count: int) -> None:
    if shutil.which("valgrind") is None:
        print("--callgrind: valgrind is not installed")
        return
    totals: dict[str, int] = {}
    for mode in ("none", "json", "pipeline"):
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
             "--pass", mode, "--events", str(count)], capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", run.stderr)
        assert found, run.stderr[-500:]
        totals[mode] = int(found.group(1))
    pipeline = (totals["pipeline"] - totals["none"]) / count
    baseline = (totals["json"] - totals["none"]) / count
    print(f"callgrind, {count} new-visitor events: pipeline {pipeline:,.0f} instructions/event, "
          f"json.loads {baseline:,.0f}, ratio {baseline / pipeline:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per event (slow)")
    parser.add_argument("--pass", dest="single", choices=["none", "json", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        one_pass(args.single, args.events)
        return 0

    engine = Engine(load_pipelines(shipped_pipelines_dir()))
    request = RequestContext(cookies={"_epik": "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0"})
    populations = {
        "new visitors": make_events(args.events, visitors=args.events),
        "returning visitors": make_events(args.events, visitors=500),
    }
    texts = {name: [json.dumps(event) for event in events] for name, events in populations.items()}

    # Sanity: every event becomes exactly one valid checkout event.
    sample = engine.process(parse_envelope(populations["new visitors"][0], received_at=time.time()), request)
    assert [(p.pipeline, p.errors) for p in sample] == [("checkout", [])], sample
    assert len(sample[0].event["user_data"]["em"]) == 1 and len(sample[0].event["custom_data"]["contents"]) == 2

    def pipeline_pass(events: list[dict[str, Any]]) -> Callable[[], int]:
        def work() -> int:
            received = time.time()
            for raw in events:
                envelope = parse_envelope(raw, received_at=received)
                for produced in engine.process(envelope, request, now=received):
                    if produced.errors:
                        raise AssertionError(produced.errors)
            return len(events)

        return work

    def json_pass(lines: list[str]) -> Callable[[], int]:
        def work() -> int:
            loads = json.loads
            for line in lines:
                loads(line)
            return len(lines)

        return work

    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {"pipeline": [], "json.loads": []} for name in populations
    }
    for _ in range(args.rounds):
        for name, events in populations.items():
            results[name]["json.loads"].append(timed(json_pass(texts[name])))
            results[name]["pipeline"].append(timed(pipeline_pass(events)))

    print(f"pipeline path on one core: {args.events} events x {args.rounds} interleaved rounds, medians")
    print(f"{'population':<20} {'pipeline ev/s':>14} {'json.loads ev/s':>16} {'ratio':>7} {'target':>7}"
          f" {'(wall ev/s)':>12}")
    for name, figures in results.items():
        pipeline = statistics.median(cpu for cpu, _ in figures["pipeline"])
        baseline = statistics.median(cpu for cpu, _ in figures["json.loads"])
        wall = statistics.median(wall for _, wall in figures["pipeline"])
        verdict = "ok" if pipeline >= TARGET else "BELOW"
        print(f"{name:<20} {pipeline:>14,.0f} {baseline:>16,.0f} {pipeline / baseline:>7.3f} {verdict:>7}"
              f" {wall:>12,.0f}")
    print(f"(events per CPU second; target: >= {TARGET:,} through envelope + checkout pipeline + v5 validation)")
    if args.callgrind:
        callgrind(2_000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
