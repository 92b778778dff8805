"""Reverse proxy: requests/s through the proxy vs straight to a realistic upstream, and memory on a 1 GB body.

    .venv/bin/python tests/bench/bench_proxy.py [--rounds 7] [--seconds 3] [--connections 16] [--gigabytes 1]

The upstream is a FastAPI app under uvicorn (DESIGN 7's realistic baseline): ``/page`` renders a
product listing of about 12 KB from a Jinja2 template, ``/api/products`` answers about 4 KB of
JSON, ``/hello`` is a hello world (reported for scale only). In front of it, the proxy app
(``create_app``, middleware included) is served by uvicorn exactly as ``pinsignal proxy`` serves it
(one worker, no Server/Date headers of its own), once per upstream client named in ``--clients``.
Every server is its own process; the load generator is ``wrk`` (``apt-get install wrk``) or,
without it, a multi-process Python client (``loadgen.py``). Direct and proxied runs are
interleaved round by round, and the medians reported (target: the proxy at least 0.5 of direct
on the page and on the JSON answer). Beside the rates, the CPU each proxy process spends per
request, which depends much less on other work on the machine. Then 1 GB is streamed through each
proxy while its RSS is sampled (target: under 100 MB).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import WRK, interleaved, load, median

from support import free_port, run_process

SECRET = "bench-proxy-secret-0123456789abcdef"
CHUNK = b"x" * (64 * 1024)
# The upstream clients the proxy can be measured with (``--clients``), each a module with an
# ``UpstreamPool``: the one the proxy ships, and the same interface on httpcore, beside this file.
# (The proxy's own HTTP/1.1 client, measured against both before it was replaced, is ``own`` at
# commit 3766659: see docs/proxy.md.)
CLIENTS = {"aiohttp": "pinsignal.proxy.upstream", "httpcore": "proxy_clients"}

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{ heading }} &middot; {{ shop }}</title>
  <link rel="stylesheet" href="/static/shop.css">
  <meta name="description" content="{{ intro }}">
</head>
<body class="listing">
  <header><a href="/" class="logo">{{ shop }}</a>
    <nav>{% for link in menu %}<a href="{{ link.href }}">{{ link.title }}</a> {% endfor %}</nav>
    <form action="/search"><input name="q" placeholder="Search"></form>
  </header>
  <main>
  <h1>{{ heading }}</h1>
  <p class="intro">{{ intro }}</p>
  <ul class="products">
  {% for product in products %}
    <li class="product{% if product.sale %} on-sale{% endif %}" data-id="{{ product.id }}">
      <a href="/products/{{ product.id }}"><img src="/img/{{ product.id }}.webp" alt="{{ product.name }}"
         width="320" height="320" loading="lazy"><h2>{{ product.name }}</h2></a>
      <p class="description">{{ product.description | truncate(90) }}</p>
      <p class="price">{% if product.sale %}<s>{{ "%.2f" | format(product.price) }}</s>
         {{ "%.2f" | format(product.sale) }}{% else %}{{ "%.2f" | format(product.price) }}{% endif %} EUR</p>
      {% if product.stock < 5 %}<p class="stock low">Only {{ product.stock }} left</p>{% endif %}
      <form action="/cart" method="post"><input type="hidden" name="sku" value="{{ product.sku }}">
        <button>Add to cart</button></form>
    </li>
  {% endfor %}
  </ul>
  </main>
  <footer>{% for link in menu %}<a href="{{ link.href }}">{{ link.title }}</a> {% endfor %}
    <p>&copy; {{ shop }}</p></footer>
</body>
</html>
"""


def products(count: int) -> list[dict[str, Any]]:
    return [{"id": 1000 + n, "sku": f"SKU-{n:05d}", "name": f"Linen cushion cover no. {n}",
             "description": "Stonewashed linen, hidden zip, fits a 45 x 45 cm cushion; washable at 40 degrees "
                            "and softer with every wash.",
             "price": 29.0 + n, "sale": 19.5 + n if n % 4 == 0 else None, "stock": n % 9,
             "tags": ["linen", "cushion", "living room"]} for n in range(count)]


def upstream_app() -> Any:
    """The FastAPI site: a templated page, a JSON answer, a hello world, and a large download."""
    import jinja2
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse

    template = jinja2.Environment(autoescape=True).from_string(TEMPLATE)
    menu = [{"href": f"/c/{name}", "title": name.title()} for name in ("living", "kitchen", "garden", "sale")]
    catalogue = products(24)
    app = FastAPI()

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return template.render(shop="Maison Lin", heading="Cushions", menu=menu, products=catalogue,
                               intro="Soft furnishings in washed linen, made in Portugal.")

    @app.get("/api/products")
    async def api_products() -> dict[str, Any]:
        return {"page": 1, "count": 12, "products": catalogue[:12]}

    @app.get("/hello", response_class=PlainTextResponse)
    async def hello() -> str:
        return "Hello, world"

    @app.get("/big")
    async def big(size: int) -> StreamingResponse:
        async def pieces() -> Any:
            sent = 0
            while sent < size:
                piece = CHUNK[: size - sent]
                sent += len(piece)
                yield piece
        return StreamingResponse(pieces(), media_type="application/octet-stream",
                                 headers={"content-length": str(size)})

    return app


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app(), host="127.0.0.1", port=port, log_level="error", access_log=False)


def serve_proxy(client: str, upstream_port: int, port: int) -> None:
    """The proxy as ``pinsignal proxy`` serves it, with the upstream client ``client``."""
    import uvicorn

    from pinsignal import MemorySink
    from pinsignal.config import Config
    from pinsignal.proxy import ProxySettings, create_app
    from pinsignal.proxy.guard import guarded_protocol

    settings = ProxySettings(upstream=f"http://127.0.0.1:{upstream_port}")
    pool = importlib.import_module(CLIENTS[client]).UpstreamPool(settings.upstream, timeout=settings.timeout,
                                                                 max_connections=settings.max_connections)
    # Pass-through requests never reach the sink; a memory sink spares the bench a Redis.
    app = create_app(settings, config=Config(secret=SECRET), upstream=pool, sink=MemorySink())
    # The visitor limits included: pinsignal proxy's own protocol, per-address slots in the app.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, server_header=False,
                date_header=False, proxy_headers=False, http=guarded_protocol(settings),
                timeout_keep_alive=settings.head_timeout)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stream_through(port: int, size: int, pid: int) -> tuple[float, int, int]:
    """Seconds to pull ``size`` bytes through the proxy, its RSS before, and its peak RSS meanwhile."""
    import httpx

    baseline = peak = rss(pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    received = 0
    started = time.perf_counter()
    try:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/big?size={size}", timeout=120) as response:
            for chunk in response.iter_raw(1024 * 1024):
                received += len(chunk)
    finally:
        stop.set()
        sampler.join()
    if received != size:
        raise RuntimeError(f"received {received} bytes of {size}")
    return time.perf_counter() - started, baseline, peak


CASES = {"page": "/page", "json": "/api/products", "hello": "/hello"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--clients", default="aiohttp", help="comma-separated: " + ", ".join(CLIENTS))
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    args = parser.parse_args()
    clients = args.clients.split(",")
    cases = args.cases.split(",")

    upstream_port = free_port()
    proxy_ports = {client: free_port() for client in clients}
    env = {"PINSIGNAL_SECRET": SECRET}
    with contextlib.ExitStack() as stack:
        upstream_pid = stack.enter_context(run_process(
            [sys.executable, __file__, "serve-upstream", str(upstream_port)], port=upstream_port)).pid
        pids = {client: stack.enter_context(run_process(
            [sys.executable, __file__, "serve-proxy", client, str(upstream_port), str(port)], port=port, env=env,
            timeout=60)).pid for client, port in proxy_ports.items()}
        # CPU per request (microseconds) of each process, beside the rates: it depends much less
        # than requests/s on what else the machine's cores are doing.
        cpu: dict[str, list[float]] = {}

        def measure(port: int, path: str, key: str, pid: int) -> Any:
            def run() -> float:
                before = cpu_seconds(pid)
                rate = load(port, path=path, seconds=args.seconds, connections=args.connections)
                cpu.setdefault(key, []).append((cpu_seconds(pid) - before) / (rate * args.seconds) * 1e6)
                return rate
            return run

        runs: dict[str, Any] = {}
        for case in cases:
            path = CASES[case]
            runs[f"{case} direct"] = measure(upstream_port, path, f"{case} upstream direct", upstream_pid)
            for client, port in proxy_ports.items():
                load(port, path=path, seconds=1, connections=args.connections)  # warm: pool, imports
                runs[f"{case} {client}"] = measure(port, path, f"{case} proxy {client}", pids[client])
        results = interleaved(runs, args.rounds)
        streamed = {client: stream_through(port, int(args.gigabytes * 1024**3), pids[client])
                    for client, port in proxy_ports.items()}

    generator = "wrk" if WRK else "python multi-process client"
    print(f"load: {generator}, {args.connections} connections, {args.seconds:.0f} s x {args.rounds} rounds "
          f"interleaved; medians (requests/s); cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'upstream answer':<32}{'direct':>8}" + "".join(f"{client:>10}{'ratio':>7}" for client in clients)
          + "  target")
    for case in cases:
        direct = median(results[f"{case} direct"])
        line = f"{_label(case):<32}{direct:>8.0f}"
        for client in clients:
            proxied = median(results[f"{case} {client}"])
            line += f"{proxied:>10.0f}{proxied / direct:>7.2f}"
        print(line + ("  >= 0.5" if case != "hello" else "  (for scale)"))
    # Each round's proxied run is next to its direct one, so their ratio moves less with other work
    # on the machine than the medians do: the median of those ratios, beside.
    def round_ratio(case: str, client: str) -> float:
        pairs = zip(results[f"{case} {client}"], results[f"{case} direct"], strict=True)
        return median([proxied / direct for proxied, direct in pairs])

    print("median of the per-round ratios: " + "; ".join(
        f"{case} " + ", ".join(f"{client} {round_ratio(case, client):.2f}" for client in clients) for case in cases))
    for client in clients[1:]:
        first = clients[0]
        print(f"{first} / {client}, requests/s through the proxy: " + ", ".join(
            f"{case} {median(results[f'{case} {first}']) / median(results[f'{case} {client}']):.2f}"
            for case in cases))
    for name, values in results.items():
        print(f"  runs {name:<16} " + " ".join(f"{value:.0f}" for value in values))
    print("CPU per request (µs, medians): " + ", ".join(f"{name} {median(values):.0f}" for name, values in cpu.items()))
    for client, (seconds, baseline, peak) in streamed.items():
        print(f"{client}: {args.gigabytes:.1f} GB through the proxy in {seconds:.1f} s "
              f"({args.gigabytes * 1024**3 / seconds / 1e6:.0f} MB/s): proxy RSS {baseline / 1e6:.1f} MB before, "
              f"peak {peak / 1e6:.1f} MB (target < 100 MB)")
    return 0


def _label(case: str) -> str:
    return {"page": f"templated page ({_page_size()} B)", "json": f"JSON answer ({_json_size()} B)",
            "hello": "hello world"}[case]


def _page_size() -> int:
    import jinja2

    template = jinja2.Environment(autoescape=True).from_string(TEMPLATE)
    menu = [{"href": f"/c/{name}", "title": name.title()} for name in ("living", "kitchen", "garden", "sale")]
    return len(template.render(shop="Maison Lin", heading="Cushions", menu=menu, products=products(24),
                               intro="Soft furnishings in washed linen, made in Portugal.").encode())


def _json_size() -> int:
    import json

    return len(json.dumps({"page": 1, "count": 12, "products": products(12)}, separators=(",", ":")).encode())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve-upstream":
        serve_upstream(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "serve-proxy":
        serve_proxy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
