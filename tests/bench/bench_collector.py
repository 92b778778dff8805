"""Benchmark: the collector, from HTTP post to events in Redis.

    .venv/bin/python tests/bench/bench_collector.py [--rounds 3] [--seconds 3] [--callgrind [--no-wall-clock]]

One uvicorn process serves the app wrapped by PinSignalMiddleware with the real pipelines and the
real Redis queue (the embedded redis-server); the load generator (wrk, else several Python
processes) posts ``order_completed`` events with unique ids, as the browser script does
(``text/plain``, same origin). Each event is parsed, checked for consent and crawlers, run through
the pipelines (SHA-256 of email and phone, v5 validation) and enqueued with its dedup check.

Figures: single-event posts per second (target >= 5,000 per process), events per second in
batches of 20 (target >= 20,000), events per second in Segment batches of 100 realistic orders
posted to ``/_ps/v1/batch`` by a server source (a write key, the shopper's context in each event,
as segment-analytics-python sends them: about 110 KB plain, 2.5 KB gzipped), plain and gzipped,
and, as the baseline measured in the same run, the same server answering the same posts from a
bare endpoint that reads the body and answers 202. Then the same four loads again, each figure per
CPU-second of the collector process (its own user + system time from ``/proc``): on a machine
shared with other work the wall-clock rates fall with the load, these do not. The script's
gzipped size is printed too (target <= 1,000 bytes). After the run the events counted in Redis
must match the events accepted.

``--trace-maxlen 0`` measures the collector without the trace (the records it writes to Redis for
``pinsignal tail`` and the inspector), for the trace's cost against the default in the same code.

``--callgrind`` adds the user-space instructions of the whole collector server (uvicorn, the
middleware, the pipelines, the Redis client) per single-event post and per event in batches of 20,
under valgrind: counters zeroed after warm-up, idle ticks subtracted, the same posts with unique
ids. Once over one keep-alive connection (every post has its own Redis round trip) and once over
eight at a time (round trips carry several posts, as under load). A machine shared with other
work cannot blur these counts; ``--no-wall-clock`` prints only them.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import ROOT, WRK, instructions, interleaved, load, median, run_uvicorn, server

from pinsignal.cookies import DeviceIds

HERE = Path(__file__).resolve()
SECRET = "bench-secret-0123456789abcdef"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
HEADERS = {"Content-Type": "text/plain;charset=UTF-8", "Sec-Fetch-Site": "same-origin", "User-Agent": BROWSER,
           "Referer": "https://shop.example/checkout?epik=dj0yJnU9Zm9vJm49YmFy",
           # A browser that has posted before: its device cookie, signed now (so not due for renewal).
           "Cookie": "_epik=dj0yJnU9Zm9vJm49YmFy; _psid=" + DeviceIds(SECRET).sign("0123456789abcdef" * 2)}
ACCOUNT = "549755885175"
WRITE_KEY = "bench-write-key-0123456789abcdef"
SEGMENT_HEADERS = {"Content-Type": "application/json", "User-Agent": "analytics-python/2.4.0",
                   "Authorization": "Basic " + base64.b64encode(WRITE_KEY.encode() + b":").decode()}
SEGMENT_BATCH = 100


def event_json(message_id: str) -> str:
    return json.dumps({
        "type": "track", "event": "order_completed", "message_id": message_id,
        "properties": {"revenue": 72.39, "currency": "USD",
                       "products": [{"product_id": "sku-1", "price": 14.99, "quantity": 3}]},
        "traits": {"email": " Jane.Doe@Example.com ", "phone": "+1 (415) 555-0123"},
        "context": {"page": {"url": "https://shop.example/checkout", "title": "Checkout"}},
    }, separators=(",", ":"))


def single_body() -> str:
    return event_json("m-@N@")


def batch_body(size: int = 20) -> str:
    return json.dumps({"batch": [json.loads(event_json(f"b-@N@-{index}")) for index in range(size)]},
                      separators=(",", ":"))


def segment_batch(tag: str) -> bytes:
    """A segment-analytics-python upload of 100 orders (its json.dumps, default separators), ids from ``tag``."""
    events = []
    for index in range(SEGMENT_BATCH):
        order_id = f"{tag}-{index}"
        events.append({
            "type": "track", "event": "Order Completed", "userId": f"u-{index}", "messageId": f"seg-{order_id}",
            "anonymousId": None, "timestamp": "2026-12-04T10:00:00.000000+00:00", "integrations": {},
            "properties": {"order_id": order_id, "checkout_id": f"chk-{order_id}", "affiliation": "Web shop",
                           "total": 272.5, "subtotal": 250.0, "revenue": 250.0, "shipping": 12.5, "tax": 10.0,
                           "discount": 0, "coupon": "", "currency": "USD",
                           "products": [{"product_id": "sku-linen-1", "sku": "LIN-1", "name": "Linen napkins",
                                         "price": 50.0, "quantity": 3, "category": "Kitchen"},
                                        {"product_id": "sku-mug-2", "sku": "MUG-2", "name": "Stoneware mug",
                                         "price": 25.0, "quantity": 4, "category": "Kitchen"}]},
            "context": {"ip": "203.0.113.9", "library": {"name": "analytics-python", "version": "2.4.0"},
                        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                                     "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                        "page": {"url": f"https://shop.example/checkout/{order_id}",
                                 "referrer": "https://shop.example/cart"},
                        "epik": "dj0yJnU9U2VuZGVyVGVzdCZuPWJhciZtPWJheiZ0PUFBQUFBQQ",
                        "traits": {"email": f" Jane.Doe+{index}@Example.com ", "phone": "+1 (415) 555-0123"}},
        })
    return json.dumps({"batch": events, "sentAt": "2026-12-04T10:00:01.000000+00:00"}).encode()


def _segment_client(port: int, gzipped: bool, seconds: float, worker: int, count: int) -> int:
    """Post ``count`` distinct prepared batches (cycled) for ``seconds`` on one keep-alive connection; 2xx posts."""
    import http.client
    import time

    bodies = [segment_batch(f"w{worker}-{os.getpid()}-{time.monotonic_ns()}-{n}") for n in range(count)]
    headers = dict(SEGMENT_HEADERS)
    if gzipped:
        bodies = [gzip.compress(body, compresslevel=6) for body in bodies]
        headers["Content-Encoding"] = "gzip"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.request("POST", "/_ps/v1/batch", body=bodies[done % count], headers=headers)
        response = connection.getresponse()
        response.read()
        if 200 <= response.status < 300:
            done += 1
    connection.close()
    return done


def segment_load(port: int, *, gzipped: bool, seconds: float, connections: int = 4) -> float:
    """Segment batch posts per second over ``connections`` client processes (bodies made before the clock)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(connections) as pool:
        counts = pool.starmap(_segment_client, [(port, gzipped, seconds, worker, 150) for worker in range(connections)])
    return sum(counts) / seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_cpu_second(pid: int, action: Any, units: int, seconds: float) -> float:
    """``units`` per CPU second of process ``pid`` while ``action()`` (requests/s over ``seconds``) runs:
    what the collector process does with a core to itself, however busy the machine is. (The load
    generator's start-up, before its clock, costs the idle server next to nothing.)"""
    before = cpu_seconds(pid)
    rate = action()
    used = cpu_seconds(pid) - before
    return rate * seconds * units / used if used else 0.0


def pipeline_paths() -> tuple[Path, ...]:
    shipped = ROOT / "pipelines"
    if any(shipped.glob("*.yaml")):
        return (shipped,)
    return (ROOT.parent / "shared" / "examples" / "pinterest-checkout.yaml",)


def collector_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the collector server ``loadgen.server`` started)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
    assert inode is not None, port
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    raise LookupError(f"no process listens on {port}")


def build_app(variant: str, redis_url: str) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from pinsignal import Config, PinSignalMiddleware

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", home)])
    if variant == "collector":
        config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=ACCOUNT, pipelines=pipeline_paths(),
                        client_events_per_minute=0,  # the load generator is one address
                        write_keys=(f"bench:{WRITE_KEY}",),
                        trace_maxlen=int(os.environ.get("BENCH_TRACE_MAXLEN", Config.trace_maxlen)))
        return PinSignalMiddleware(app, config=config)

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 202,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    return bare


def callgrind(posts: int) -> dict[str, float]:
    """Instructions per single post and per batched event of the collector server (see the docstring)."""
    import http.client
    import itertools
    import subprocess
    import threading
    import time

    from pinsignal.embedded import EmbeddedRedis
    from support import free_port, stop_process, wait_for_port

    counter = itertools.count()
    with tempfile.TemporaryDirectory() as folder:
        embedded = EmbeddedRedis(Path(folder) / "redis")
        embedded.ensure_running()
        port = free_port()
        out = Path(folder) / "callgrind.out"
        process = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                    str(HERE), "serve", "collector", str(port), embedded.url],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONHASHSEED": "0"}, start_new_session=True)
        try:
            wait_for_port(port, timeout=300, process=process)

            def post(connection: http.client.HTTPConnection, template: str, count: int) -> None:
                for _ in range(count):
                    connection.request("POST", "/_ps/e", body=template.replace("@N@", str(next(counter))),
                                       headers=HEADERS)
                    response = connection.getresponse()
                    answer = response.read()
                    assert response.status == 202 and b'"rejected":[]' in answer, (response.status, answer)

            def run(template: str, count: int, connections: int) -> None:
                clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=300) for _ in range(connections)]
                threads = [threading.Thread(target=post, args=(client, template, count // connections))
                           for client in clients]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                for client in clients:
                    client.close()

            def counted(action: Any) -> tuple[int, float]:
                return instructions(process.pid, Path(folder), action)

            def batches(count: int, gzipped: bool) -> list[bytes]:
                bodies = [segment_batch(f"cg-{next(counter)}") for _ in range(count)]
                return [gzip.compress(body, compresslevel=6) for body in bodies] if gzipped else bodies

            def segment(bodies: list[bytes], gzipped: bool, connections: int) -> None:
                headers = {**SEGMENT_HEADERS, **({"Content-Encoding": "gzip"} if gzipped else {})}

                def send(chunk: list[bytes]) -> None:
                    client = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                    for body in chunk:
                        client.request("POST", "/_ps/v1/batch", body=body, headers=headers)
                        response = client.getresponse()
                        answer = response.read()
                        assert response.status == 200 and answer == b'{"success":true}', (response.status, answer)
                    client.close()

                threads = [threading.Thread(target=send, args=(bodies[index::connections],))
                           for index in range(connections)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()

            single, batch = single_body(), batch_body()
            run(single, 200, 1)  # warm: the caches, the allocator, the Redis connection
            run(batch, 200, 8)
            idle, idle_seconds = counted(lambda: time.sleep(3))
            counts: dict[str, float] = {}
            for connections in (1, 8):
                for name, template, events in (("single", single, 1), ("batch", batch, 20)):
                    total, elapsed = counted(lambda t=template, c=connections: run(t, posts, c))
                    counts[f"{name} x{connections}"] = (total - idle / idle_seconds * elapsed) / posts / events
            segment(batches(4, True), True, 1)  # warm
            for gzipped in (False, True):
                bodies = batches(max(4, posts // 40), gzipped)  # made before the count starts
                total, elapsed = counted(lambda b=bodies, g=gzipped: segment(b, g, 4))
                counts[f"segment{' gzip' if gzipped else ''}"] = (
                    (total - idle / idle_seconds * elapsed) / len(bodies) / SEGMENT_BATCH)
            return counts
        finally:
            stop_process(process)
            embedded.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind (slow)")
    parser.add_argument("--callgrind-posts", type=int, default=320)
    parser.add_argument("--appendfsync", choices=["always", "everysec"],
                        help="the embedded Redis's fsync policy for the wall-clock runs (default: its own, always), "
                             "for the cost of durability against everysec")
    parser.add_argument("--no-wall-clock", action="store_true", help="callgrind figures only")
    parser.add_argument("--trace-maxlen", type=int, help="the collector's PINSIGNAL_TRACE_MAXLEN (default: "
                        "Config's; 0 measures the collector without the trace)")
    args = parser.parse_args()
    if args.trace_maxlen is not None:
        os.environ["BENCH_TRACE_MAXLEN"] = str(args.trace_maxlen)  # read by the server processes
    if args.callgrind:
        counts = callgrind(args.callgrind_posts)
        print("\ncallgrind: user-space instructions of the collector server (start-up and idle subtracted)")
        for connections in (1, 8):
            print(f"  {connections} connection(s): {counts[f'single x{connections}']:>9,.0f} per single-event post, "
                  f"{counts[f'batch x{connections}']:>9,.0f} per event in batches of 20")
        print(f"  Segment batches of 100 on 4 connections: {counts['segment']:>9,.0f} per event plain, "
              f"{counts['segment gzip']:>9,.0f} per event gzipped")
        if args.no_wall_clock:
            return 0
    import redis

    from pinsignal import Config, keys
    from pinsignal.collector.script import Script
    from pinsignal.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory() as folder:
        embedded = EmbeddedRedis(Path(folder))
        embedded.ensure_running()
        try:
            client = redis.Redis.from_url(embedded.url)
            if args.appendfsync:  # the embedded default is "always": acknowledged means on disk
                client.config_set("appendfsync", args.appendfsync)
            with server(HERE, "collector", embedded.url) as collector, server(HERE, "bare", embedded.url) as bare:
                single, batch = single_body(), batch_body()
                for port in (collector, bare):
                    load(port, path="/_ps/e", method="POST", headers=HEADERS, body_template=single, seconds=1)
                enqueued_before = int(client.hget(keys.account_counters(ACCOUNT), "enqueued") or 0)
                measures = {
                    "single collector": lambda: load(collector, path="/_ps/e", method="POST", headers=HEADERS,
                                                     body_template=single, seconds=args.seconds),
                    "single bare": lambda: load(bare, path="/_ps/e", method="POST", headers=HEADERS,
                                                body_template=single, seconds=args.seconds),
                    "batch collector": lambda: load(collector, path="/_ps/e", method="POST", headers=HEADERS,
                                                    body_template=batch, seconds=args.seconds),
                    "batch bare": lambda: load(bare, path="/_ps/e", method="POST", headers=HEADERS,
                                               body_template=batch, seconds=args.seconds),
                    "segment collector": lambda: segment_load(collector, gzipped=False, seconds=args.seconds),
                    "segment bare": lambda: segment_load(bare, gzipped=False, seconds=args.seconds),
                    "segment gzip collector": lambda: segment_load(collector, gzipped=True, seconds=args.seconds),
                    "segment gzip bare": lambda: segment_load(bare, gzipped=True, seconds=args.seconds),
                }
                results = interleaved(measures, args.rounds)
                pid = collector_pid(collector)
                units = {"single": 1, "batch": 20, "segment": SEGMENT_BATCH, "segment gzip": SEGMENT_BATCH}
                cpu_measures = {name: lambda n=name: per_cpu_second(pid, measures[f"{n} collector"], units[n],
                                                                    args.seconds) for name in units}
                cpu_results = interleaved(cpu_measures, args.rounds)
                enqueued = int(client.hget(keys.account_counters(ACCOUNT), "enqueued") or 0) - enqueued_before
                rejected = int(client.hget(keys.COUNTERS, "rejected_invalid") or 0)
            client.close()
        finally:
            embedded.stop()
    rates = {name: median(values) for name, values in results.items()}
    gzipped = len(Script(Config(secret=SECRET)).gzipped)
    print(f"\ncollector benchmark: {args.rounds} interleaved rounds of {args.seconds} s, medians, one uvicorn "
          f"process, real Redis; load generator: {'wrk' if WRK else 'python'} (cpus: {os.cpu_count()})")
    print(f"{'figure':<34} {'value':>10} {'baseline':>10} {'ratio':>7}  target")
    single_rate, single_base = rates["single collector"], rates["single bare"]
    batch_rate, batch_base = rates["batch collector"] * 20, rates["batch bare"] * 20
    print(f"{'single-event posts/s':<34} {single_rate:>10.0f} {single_base:>10.0f} {single_rate / single_base:>7.3f}"
          f"  >= 5,000")
    print(f"{'events/s in batches of 20':<34} {batch_rate:>10.0f} {batch_base:>10.0f} {batch_rate / batch_base:>7.3f}"
          f"  >= 20,000")
    for name, label in (("segment", "events/s, Segment batches of 100"), ("segment gzip", "  the same, gzipped")):
        rate, base = rates[f"{name} collector"] * SEGMENT_BATCH, rates[f"{name} bare"] * SEGMENT_BATCH
        print(f"{label:<34} {rate:>10.0f} {base:>10.0f} {rate / base:>7.3f}  >= 20,000")
    cpu = {name: median(values) for name, values in cpu_results.items()}
    print("per CPU-second of the collector process (its own CPU time, so a busy machine does not lower it):")
    print(f"  {cpu['single']:,.0f} single-event posts, {cpu['batch']:,.0f} events in batches of 20, "
          f"{cpu['segment']:,.0f} events in Segment batches of 100, {cpu['segment gzip']:,.0f} gzipped")
    print(f"{'browser script, gzipped bytes':<34} {gzipped:>10} {'':>10} {'':>7}  <= 1,000")
    print(f"events enqueued in Redis during the measured runs: {enqueued} (rejected as invalid: {rejected})")
    return 0 if enqueued > 0 and rejected == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        run_uvicorn(build_app(sys.argv[2], sys.argv[4]), int(sys.argv[3]))
    else:
        raise SystemExit(main())
