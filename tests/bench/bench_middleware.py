"""Benchmark: the middleware's cost on the wrapped app's own requests.

    .venv/bin/python tests/bench/bench_middleware.py [--rounds 5] [--seconds 3] [--no-callgrind] [--no-wall-clock]

The main case is a realistic app (DESIGN section 7): FastAPI rendering a product listing of about
15 KB from Jinja2 templates (``tests/bench/templates``). A Starlette hello world is measured too,
for scale only: its requests cost so little that any middleware looks big beside them.

uvicorn serves each variant in its own process:

* ``bare``: the app, no middleware;
* ``wrapped``: the same app inside PinSignalMiddleware;
* ``basehttp``: the same app inside a BaseHTTPMiddleware doing the same epik check (for scale,
  wall clock only).

Requests: a pass-through ``GET /products?page=2`` and an ad landing ``GET /?...&epik=...`` as a
browser navigation (sets ``_epik``; the device id comes later, with the first event).

Targets: wrapped/bare >= 0.95 pass-through, >= 0.9 landing, by instructions: the user-space
instructions per request of the whole uvicorn server under ``valgrind --tool=callgrind`` (start-up
and idle subtracted), which a shared noisy machine cannot blur. Requests per second (the load
generator is wrk, else several Python processes), measured in interleaved rounds, medians, are
printed beside them; on a shared 2-core machine they move by several percent between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import instructions, interleaved, load, median, run_uvicorn, server

HERE = Path(__file__).resolve()
TEMPLATES = HERE.parent / "templates"
SECRET = "bench-secret-0123456789abcdef"
NAVIGATION = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Dest": "document",
              "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 Safari/537.36"}
LANDING = "/?utm_source=pinterest&epik=dj0yJnU9Zm9vJm49YmFyJm09YmF6JnQ9QUFBQUFB"
PASS = "/products?page=2"
APPS = {"page": "FastAPI page from Jinja2 templates", "hello": "Starlette hello world, for scale"}
TARGETS = {"pass": 0.95, "landing": 0.9}


class _NoPipelines:
    """The web path never runs pipelines; this keeps the benchmark independent of the shipped YAML."""

    cookie_names: frozenset[str] = frozenset()

    def process(self, envelope: Any, context: Any) -> list[Any]:
        return []


def page_app() -> Any:
    """A shop's FastAPI app: each page rendered from Jinja2 templates, as a real site does it."""
    templates = Jinja2Templates(directory=TEMPLATES)
    templates.env.filters["money"] = lambda cents: f"${cents // 100:,}.{cents % 100:02d}"
    words = ("linen", "oak", "woven", "stoneware", "copper", "wool", "glazed", "hand-thrown", "natural", "brushed")
    products = [{"id": 1000 + n, "sku": f"SKU-{1000 + n:05d}",
                 "name": f"{words[n % 10].title()} {('bowl', 'throw', 'lamp', 'vase', 'mug', 'tray')[n % 6]} no. {n}",
                 "description": f"A {words[n % 10]} piece made in small batches by our studio; every one is a little "
                                f"different, and {words[(n + 3) % 10]} details make it yours.",
                 "price": 1900 + 350 * n, "sale": 1500 + 300 * n if n % 4 == 0 else None, "stock": n % 9}
                for n in range(96)]
    shared = {
        "shop": {"name": "Hearth & Field", "tagline": "Homewares made by hand", "version": "2026.12",
                 "free_shipping": 7500},
        "categories": [{"slug": slug, "title": slug.title()} for slug in
                       ("kitchen", "living", "bedroom", "bath", "garden", "lighting", "gifts", "sale")],
        "footer_links": [(label, "/help/" + label.lower().replace(" ", "-")) for label in
                         ("Shipping", "Returns", "Contact us", "Gift cards", "Care guides", "Privacy")],
        "year": 2026, "cart_count": 0, "pages": 4,
    }
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "listing.html", {
            **shared, "heading": "New this week", "intro": "Fresh from the studio.", "active": None,
            "products": products[:24], "page": 1})

    @app.get("/products", response_class=HTMLResponse)
    async def listing(request: Request, page: int = 1, category: str | None = None) -> HTMLResponse:
        return templates.TemplateResponse(request, "listing.html", {
            **shared, "heading": "All products", "intro": f"Page {page} of 4.", "active": category,
            "products": products[(page - 1) * 24:page * 24], "page": page})

    return app


def hello_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello), Route("/products", hello)])


def build_app(variant: str, kind: str = "page") -> Any:
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import Response

    from pinsignal import Config, MemorySink, PinSignalMiddleware
    from pinsignal.cookies import epik_from_query

    app = page_app() if kind == "page" else hello_app()
    if variant == "bare":
        return app
    if variant == "wrapped":
        return PinSignalMiddleware(app, config=Config(secret=SECRET), sink=MemorySink(), engine=_NoPipelines())

    class EpikCookie(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            epik = epik_from_query(request.scope["query_string"]) if b"epik=" in request.scope["query_string"] else None
            if epik:
                response.headers.append("set-cookie", f"_epik={epik}; Max-Age=34560000; Path=/; SameSite=Lax")
            return response

    app.add_middleware(EpikCookie)
    return app


REQUESTS = {"pass": (PASS, {}), "landing": (LANDING, NAVIGATION)}


def _server_instructions(variant: str, requests: int, kind: str) -> dict[str, float]:
    """User-space instructions per request of the whole uvicorn server, for each request kind.

    The server runs under ``valgrind --tool=callgrind`` and is warmed up; then, per request kind,
    its counters are zeroed, ``requests`` requests are sent over one keep-alive connection from
    this (unmeasured) process and the counters are dumped. Start-up and imports are never counted,
    and the server's idle ticks while valgrind runs slowly (uvicorn wakes every 0.1 s) are measured
    separately and subtracted.
    """
    import http.client
    import time

    from support import free_port, stop_process, wait_for_port

    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        process = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                    str(HERE), "serve", variant, str(port), kind], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"},
                                   start_new_session=True)
        try:
            wait_for_port(port, timeout=300, process=process)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

            def run(path: str, headers: dict[str, str], count: int) -> None:
                for _ in range(count):
                    connection.request("GET", path, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200, response.status

            def counted(action: Any) -> tuple[int, float]:
                return instructions(process.pid, Path(folder), action)

            for path, headers in REQUESTS.values():
                run(path, headers, 100)  # warm: the app's stack, the template cache, the allocator
            idle, idle_seconds = counted(lambda: time.sleep(3))
            counts: dict[str, float] = {}
            for request, (path, headers) in REQUESTS.items():
                total, elapsed = counted(lambda path=path, headers=headers: run(path, headers, requests))
                counts[request] = (total - idle / idle_seconds * elapsed) / requests
            connection.close()
            return counts
        finally:
            stop_process(process)


def page_size() -> int:
    """Bytes of the realistic app's pass-through page, rendered in this process."""
    import asyncio

    import httpx

    async def get() -> int:
        transport = httpx.ASGITransport(app=build_app("bare", "page"))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
            response = await client.get(PASS)
            landing = await client.get(LANDING, headers=NAVIGATION)
        assert response.status_code == landing.status_code == 200, (response.text, landing.text)
        return len(response.content)

    return asyncio.run(get())


def _figure(figure: str, value: float, baseline: float, target: float | None) -> None:
    """One line for tests/bench/run_all.py; a target only where the figure is judged."""
    ratio = baseline / value if "instructions" in figure else value / baseline
    print("BENCH-JSON " + json.dumps({
        "figure": figure, "value": round(value, 1), "baseline": round(baseline, 1), "ratio": round(ratio, 4),
        "target": f">= {target}" if target is not None else "(for scale)",
        "pass": None if target is None else ratio >= target}))


def callgrind(args: argparse.Namespace) -> None:
    print(f"\ncallgrind: user-space instructions per request of the uvicorn server (start-up and idle "
          f"subtracted), {args.callgrind_requests} requests of each kind")
    print(f"{'request':<9} {'app':<6} {'bare':>10} {'wrapped':>10} {'added':>8} {'bare/wrapped':>13}  target")
    for kind in APPS:
        bare = _server_instructions("bare", args.callgrind_requests, kind)
        wrapped = _server_instructions("wrapped", args.callgrind_requests, kind)
        for request, target in TARGETS.items():
            judged = target if kind == "page" else None
            print(f"{request:<9} {kind:<6} {bare[request]:>10.0f} {wrapped[request]:>10.0f} "
                  f"{wrapped[request] - bare[request]:>8.0f} {bare[request] / wrapped[request]:>13.3f}  "
                  f"{f'>= {target}' if judged else '(for scale)'}")
            _figure(f"{request} instructions/request, wrapped vs bare, {APPS[kind]}", wrapped[request], bare[request],
                    judged)


def wall_clock(args: argparse.Namespace) -> None:
    variants = ("bare", "wrapped", "basehttp")
    for kind in APPS:
        with server(HERE, "bare", kind) as bare, server(HERE, "wrapped", kind) as wrapped, \
                server(HERE, "basehttp", kind) as basehttp:
            ports = dict(zip(variants, (bare, wrapped, basehttp), strict=True))
            for port in ports.values():  # warm each server up
                load(port, path=PASS, seconds=1)
            measures: dict[str, Any] = {}
            for variant, port in ports.items():
                for request, (path, headers) in REQUESTS.items():
                    measures[f"{request} {variant}"] = lambda port=port, path=path, headers=headers: load(
                        port, path=path, headers=headers, seconds=args.seconds)
            results = interleaved(measures, args.rounds)
        rates = {name: median(values) for name, values in results.items()}
        print(f"\nrequests/s, {APPS[kind]}: {args.rounds} interleaved rounds of {args.seconds:g} s, medians, "
              f"load generator: {'wrk' if load.__globals__['WRK'] else 'python'} (cpus: {os.cpu_count()})")
        print(f"{'request':<9} {'variant':<10} {'req/s':>10} {'bare req/s':>11} {'ratio':>7}")
        for request in TARGETS:
            base = rates[f"{request} bare"]
            for variant in ("wrapped", "basehttp"):
                rate = rates[f"{request} {variant}"]
                print(f"{request:<9} {variant:<10} {rate:>10.0f} {base:>11.0f} {rate / base:>7.3f}")
                _figure(f"{request} req/s, {variant} vs bare, {APPS[kind]}", rate, base, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--no-callgrind", action="store_true", help="requests per second only")
    parser.add_argument("--callgrind-requests", type=int, default=300)
    parser.add_argument("--no-wall-clock", action="store_true", help="instructions only")
    args = parser.parse_args()
    print(f"realistic app: {APPS['page']}, {page_size():,} bytes a page")
    if not args.no_callgrind:
        callgrind(args)
    if not args.no_wall_clock:
        wall_clock(args)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        run_uvicorn(build_app(sys.argv[2], *sys.argv[4:5]), int(sys.argv[3]))
    else:
        raise SystemExit(main())
