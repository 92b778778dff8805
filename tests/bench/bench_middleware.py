"""Benchmark: the middleware's cost on the wrapped app's own requests.

    .venv/bin/python tests/bench/bench_middleware.py [--rounds 5] [--seconds 3] [--callgrind] [--app fastapi]

uvicorn serves each variant in its own process; the load generator (wrk, else several Python
processes) runs in another. Variants, measured interleaved, medians reported:

* ``bare``: a Starlette app (``--app fastapi``: the same routes as a FastAPI app), no middleware;
* ``wrapped``: the same app inside PinSignalMiddleware;
* ``basehttp``: the same app inside a BaseHTTPMiddleware doing the same epik check (for scale);
* ``floor``: the same app inside the least a cookie-setting middleware can be (pure ASGI, the
  same ``Set-Cookie`` appended as a constant, no check of value, consent or scheme; for scale).

Requests: a pass-through ``GET /products?page=2`` and an ad landing ``GET /?epik=...`` as a browser
navigation (sets ``_epik``; the device id comes later, with the first event). Targets: wrapped/bare
>= 0.95 pass-through, >= 0.9 landing. ``--callgrind`` adds the user-space instructions per request
of the whole uvicorn server under valgrind (start-up and idle subtracted), which a shared noisy
machine cannot blur. ``bare+cookies`` is the bare app sending the same ``Set-Cookie`` itself: the
cost of the header on the wire (uvicorn checks every header), which no middleware can avoid;
it is served by a later route than ``/``, so Starlette's routing adds to it too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import instructions, interleaved, load, median, run_uvicorn, server

HERE = Path(__file__).resolve()
SECRET = "bench-secret-0123456789abcdef"
NAVIGATION = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Dest": "document",
              "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 Safari/537.36"}
LANDING = "/?utm_source=pinterest&epik=dj0yJnU9Zm9vJm49YmFyJm09YmF6JnQ9QUFBQUFB"
PASS = "/products?page=2"
# What a landing's answer carries: the bare app sets it itself in the "bare+cookies" row, which
# separates the cost of the bytes on the wire from the cost of the middleware's work.
SAME_COOKIES = (b"_epik=dj0yJnU9Zm9vJm49YmFyJm09YmF6JnQ9QUFBQUFB; Max-Age=34560000; Path=/; SameSite=Lax",)


class _NoPipelines:
    """The web path never runs pipelines; this keeps the benchmark independent of the shipped YAML."""

    cookie_names: frozenset[str] = frozenset()

    def process(self, envelope: Any, context: Any) -> list[Any]:
        return []


def build_app(variant: str, kind: str = "starlette") -> Any:
    from starlette.applications import Starlette
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from pinsignal import Config, MemorySink, PinSignalMiddleware
    from pinsignal.cookies import epik_from_query

    async def home(request: Request) -> Response:
        return PlainTextResponse("hello")

    async def cookies(request: Request) -> Response:
        response = PlainTextResponse("hello")
        response.raw_headers.extend((b"set-cookie", cookie) for cookie in SAME_COOKIES)
        return response

    if kind == "fastapi":
        from fastapi import FastAPI

        async def fastapi_home() -> Any:  # FastAPI endpoints take what they declare: nothing here
            return await home(None)  # type: ignore[arg-type]

        async def fastapi_cookies() -> Any:
            return await cookies(None)  # type: ignore[arg-type]

        app: Any = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        for path, endpoint in (("/", fastapi_home), ("/products", fastapi_home), ("/cookies", fastapi_cookies)):
            app.add_api_route(path, endpoint, response_model=None)
    else:
        app = Starlette(routes=[Route("/", home), Route("/products", home), Route("/cookies", cookies)])
    if variant == "bare":
        return app
    if variant == "wrapped":
        return PinSignalMiddleware(app, config=Config(secret=SECRET), sink=MemorySink(), engine=_NoPipelines())
    if variant == "floor":
        return _floor(app)

    class EpikCookie(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            epik = epik_from_query(request.scope["query_string"]) if b"epik=" in request.scope["query_string"] else None
            if epik:
                response.headers.append("set-cookie", f"_epik={epik}; Max-Age=34560000; Path=/; SameSite=Lax")
            return response

    app.add_middleware(EpikCookie)
    return app


def _floor(app: Any) -> Any:
    """The least a cookie-setting middleware can cost here: pure ASGI, an ``epik=`` search, and the
    same ``Set-Cookie`` appended as it is, with no check of the value, consent or scheme at all.
    A yardstick for the landing's target, not something to ship."""
    cookie = (b"set-cookie", SAME_COOKIES[0])

    async def floor(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["query_string"].find(b"epik=") < 0:
            await app(scope, receive, send)
            return

        def send_with_cookie(message: Any) -> Any:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], cookie]}
            return send(message)

        await app(scope, receive, send_with_cookie)

    return floor


def callgrind(requests: int, kind: str) -> dict[str, dict[str, float]]:
    """User-space instructions per request of the whole uvicorn server, for each variant and request.

    Each server runs under ``valgrind --tool=callgrind`` and is warmed up; then, per request kind,
    its counters are zeroed, ``requests`` requests are sent over one keep-alive connection from
    this (unmeasured) process and the counters are dumped. Start-up and imports are never counted,
    and the server's idle ticks while valgrind runs slowly (uvicorn wakes every 0.1 s) are measured
    separately and subtracted. A machine shared with other work cannot blur these counts.
    """
    return {variant: _server_instructions(variant, requests, kind) for variant in ("bare", "wrapped", "floor")}


def _server_instructions(variant: str, requests: int, kind: str) -> dict[str, float]:
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
            kinds = {"pass": (PASS, {}), "landing": (LANDING, NAVIGATION)}

            def run(path: str, headers: dict[str, str], count: int) -> None:
                for _ in range(count):
                    connection.request("GET", path, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200, response.status

            def counted(action: Any) -> tuple[int, float]:
                return instructions(process.pid, Path(folder), action)

            for path, headers in kinds.values():
                run(path, headers, 300)  # warm: Starlette's stack, the caches, the allocator
            idle, idle_seconds = counted(lambda: time.sleep(3))
            counts: dict[str, float] = {}
            for kind, (path, headers) in kinds.items():
                total, elapsed = counted(lambda path=path, headers=headers: run(path, headers, requests))
                counts[kind] = (total - idle / idle_seconds * elapsed) / requests
            connection.close()
            return counts
        finally:
            stop_process(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--callgrind-requests", type=int, default=1500)
    parser.add_argument("--no-wall-clock", action="store_true", help="callgrind figures only")
    parser.add_argument("--app", choices=("starlette", "fastapi"), default="starlette",
                        help="the wrapped app: Starlette routes, or the same routes in FastAPI")
    args = parser.parse_args()
    if not args.no_wall_clock:
        wall_clock(args)
    if args.callgrind:
        counts = callgrind(args.callgrind_requests, args.app)
        print(f"\ncallgrind ({args.app} app): user-space instructions per request of the uvicorn "
              "server (start-up and idle subtracted)")
        print(f"{'request':<10} {'variant':<10} {'bare':>10} {'variant':>10} {'added':>8} {'bare/variant':>13}")
        for kind in ("pass", "landing"):
            bare_count = counts["bare"][kind]
            for variant in ("wrapped", "floor"):
                count = counts[variant][kind]
                print(f"{kind:<10} {variant:<10} {bare_count:>10.0f} {count:>10.0f} {count - bare_count:>8.0f} "
                      f"{bare_count / count:>13.3f}  {_notes.get(variant, '')}")
    return 0


_notes = {"basehttp": "(scale: ~0.2 in the reference)",
          "floor": "(scale: only appends the same constant cookie, no checks)",
          "bare+cookies": "(the bare app sending the same Set-Cookie header itself)"}


def wall_clock(args: argparse.Namespace) -> None:
    variants = ("bare", "wrapped", "basehttp", "floor")
    with server(HERE, "bare", args.app) as bare, server(HERE, "wrapped", args.app) as wrapped, \
            server(HERE, "basehttp", args.app) as basehttp, server(HERE, "floor", args.app) as floor:
        ports = dict(zip(variants, (bare, wrapped, basehttp, floor), strict=True))
        for port in ports.values():  # warm each server up
            load(port, path=PASS, seconds=1)
        measures: dict[str, Any] = {}
        for variant, port in ports.items():
            measures[f"pass {variant}"] = lambda port=port: load(port, path=PASS, seconds=args.seconds)
            measures[f"landing {variant}"] = lambda port=port: load(port, path=LANDING, headers=NAVIGATION,
                                                                   seconds=args.seconds)
        measures["landing bare+cookies"] = lambda: load(ports["bare"], path="/cookies" + LANDING[1:],
                                                        headers=NAVIGATION, seconds=args.seconds)
        results = interleaved(measures, args.rounds)
    rates = {name: median(values) for name, values in results.items()}
    print(f"\nmiddleware benchmark ({args.app} app): {args.rounds} interleaved rounds of "
          f"{args.seconds:g} s, medians, load generator: {'wrk' if load.__globals__['WRK'] else 'python'} "
          f"(cpus: {os.cpu_count()})")
    print(f"{'request':<10} {'variant':<10} {'req/s':>10} {'bare req/s':>11} {'ratio':>7}  target")
    for kind, target in (("pass", ">= 0.95"), ("landing", ">= 0.9")):
        base = rates[f"{kind} bare"]
        for variant in ("wrapped", "basehttp", "floor", "bare+cookies"):
            if f"{kind} {variant}" not in rates:
                continue
            rate = rates[f"{kind} {variant}"]
            print(f"{kind:<10} {variant:<10} {rate:>10.0f} {base:>11.0f} {rate / base:>7.3f}  "
                  f"{_notes.get(variant, target)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        run_uvicorn(build_app(sys.argv[2], *sys.argv[4:5]), int(sys.argv[3]))
    else:
        raise SystemExit(main())
