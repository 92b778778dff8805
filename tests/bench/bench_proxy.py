"""Reverse proxy: requests/s through ``pinsignal proxy`` vs straight to the upstream, and memory on a 1 GB body.

    .venv/bin/python tests/bench/bench_proxy.py [--rounds 5] [--seconds 3] [--connections 16] [--gigabytes 1]
    .venv/bin/python tests/bench/bench_proxy.py --callgrind --no-wall-clock    # instructions per request only

Every server is its own process: two upstreams serving the same small page (about 1 KB of HTML),
a Python ASGI app under uvicorn and ``python -m http.server`` (a plain static file server), and
``pinsignal proxy`` in front of each, exactly as shipped (middleware included, one worker). The load
generator is ``wrk`` (``apt-get install wrk``) or, without it, a multi-process Python client
(``loadgen.py``). Direct and proxied runs are interleaved and the medians reported (DESIGN 7:
at least 0.5). Then 1 GB is streamed through the proxy while its RSS is sampled (target: under
100 MB). ``--callgrind`` adds the proxy's user-space instructions per proxied request, which a
machine busy with other work cannot blur.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import WRK, instructions, interleaved, load, median

from support import free_port, pinsignal_cmd, run_process, wait_for_port

PAGE = (b"<!DOCTYPE html><html><head><meta charset=utf-8><title>Shop</title></head><body><h1>Shop</h1>"
        + b"<p>" + b"A small page. " * 60 + b"</p></body></html>")
CHUNK = b"x" * (64 * 1024)
SECRET = "bench-proxy-secret-0123456789abcdef"


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/big":
        size = int(scope["query_string"].decode().split("=", 1)[1])
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]})
        sent = 0
        while sent < size:
            piece = CHUNK[: size - sent]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(PAGE)).encode())]})
    await send({"type": "http.response.body", "body": PAGE})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app, host="127.0.0.1", port=port, log_level="error", access_log=False,
                server_header=False, date_header=False)


def proxy_command(upstream_port: int, port: int, workers: int = 1) -> list[str]:
    return pinsignal_cmd("--log-level", "warning", "proxy", "--upstream", f"http://127.0.0.1:{upstream_port}",
                         "--port", str(port), "--workers", str(workers))


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


def callgrind(requests: int) -> float:
    """User-space instructions per proxied request of the whole proxy process, middleware included.

    The proxy (``pinsignal proxy``, one worker) runs under ``valgrind --tool=callgrind`` in front of
    the ASGI upstream (not under valgrind), and is warmed up; then its counters are zeroed,
    ``requests`` requests for the small page are sent over one keep-alive connection from this
    (unmeasured) process, and the counters are dumped. Start-up is never counted, and the idle
    ticks of the slowed-down process are measured apart and subtracted.
    """
    import http.client

    from support import stop_process

    upstream_port, port = free_port(), free_port()
    env = {"PINSIGNAL_SECRET": SECRET, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as folder, \
            run_process([sys.executable, __file__, "serve", str(upstream_port)], port=upstream_port):
        env["PINSIGNAL_DATA_DIR"] = str(Path(folder) / "data")
        out = Path(folder) / "callgrind.out"
        process = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                    *proxy_command(upstream_port, port)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env={**os.environ, **env}, start_new_session=True)
        try:
            wait_for_port(port, timeout=300, process=process)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

            def run(count: int) -> None:
                for _ in range(count):
                    connection.request("GET", "/")
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200, response.status

            def counted(action: Any) -> tuple[int, float]:
                return instructions(process.pid, Path(folder), action)

            run(500)  # warm: the pool, the caches, the allocator
            idle, idle_seconds = counted(lambda: time.sleep(2))
            total, elapsed = counted(lambda: run(requests))
            connection.close()
            return (total - idle / idle_seconds * elapsed) / requests
        finally:
            stop_process(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--callgrind-requests", type=int, default=2000)
    parser.add_argument("--no-wall-clock", action="store_true", help="callgrind figures only")
    args = parser.parse_args()
    if args.callgrind:
        print(f"callgrind: {callgrind(args.callgrind_requests):,.0f} user-space instructions per proxied request "
              f"(proxy process, middleware included; start-up and idle subtracted)")
    if args.no_wall_clock:
        return 0

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "www").mkdir()
        (root / "www" / "index.html").write_bytes(PAGE)
        env = {"PINSIGNAL_SECRET": SECRET, "PINSIGNAL_DATA_DIR": str(root / "data")}
        asgi_port, static_port, proxy_asgi, proxy_static, proxy_two = (free_port() for _ in range(5))
        with run_process([sys.executable, __file__, "serve", str(asgi_port)], port=asgi_port) as asgi_process, \
                run_process([sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1",
                             "--directory", str(root / "www")], port=static_port), \
                run_process(proxy_command(asgi_port, proxy_asgi), port=proxy_asgi, env=env,
                            timeout=60) as proxy_process, \
                run_process(proxy_command(static_port, proxy_static), port=proxy_static, env=env, timeout=60), \
                run_process(proxy_command(asgi_port, proxy_two, workers=2), port=proxy_two, env=env, timeout=60):
            for port in (asgi_port, static_port, proxy_asgi, proxy_static, proxy_two):
                wait_for_port(port)

            # CPU per request (microseconds) of the upstream and of the proxy, beside the rates:
            # it depends much less than requests/s on what else the machine's cores are doing.
            cpu: dict[str, list[float]] = {"upstream, direct": [], "upstream, proxied": [], "proxy": []}

            def measure(port: int, path: str, *processes: tuple[str, int]) -> Any:
                def run() -> float:
                    before = [cpu_seconds(pid) for _, pid in processes]
                    rate = load(port, path=path, seconds=args.seconds, connections=args.connections)
                    for (name, pid), start in zip(processes, before, strict=True):
                        cpu[name].append((cpu_seconds(pid) - start) / (rate * args.seconds) * 1e6)
                    return rate
                return run

            for port, path in ((proxy_asgi, "/"), (proxy_static, "/index.html"), (proxy_two, "/"), (proxy_two, "/")):
                load(port, path=path, seconds=1, connections=args.connections)  # warm up pools and imports
            results = interleaved({
                "asgi direct": measure(asgi_port, "/", ("upstream, direct", asgi_process.pid)),
                "asgi proxied": measure(proxy_asgi, "/", ("upstream, proxied", asgi_process.pid),
                                        ("proxy", proxy_process.pid)),
                "asgi proxied x2": measure(proxy_two, "/"),
                "static direct": measure(static_port, "/index.html"),
                "static proxied": measure(proxy_static, "/index.html"),
            }, args.rounds)
            size = int(args.gigabytes * 1024**3)
            seconds, baseline, peak = stream_through(proxy_asgi, size, proxy_process.pid)

    generator = "wrk" if WRK else "python multi-process client"
    print(f"load: {generator}, {args.connections} connections, {args.seconds:.0f} s x {args.rounds} rounds "
          f"interleaved; medians (requests/s); page {len(PAGE)} bytes; cpus {os.cpu_count()}")
    print(f"{'upstream':<44}{'direct':>8}{'proxied':>9}{'ratio':>7}  target")
    for name, label in (("asgi", "Python ASGI app (uvicorn), proxy 1 worker"),
                        ("asgi", "Python ASGI app (uvicorn), proxy 2 workers"),
                        ("static", "static files (http.server), proxy 1 worker")):
        key = f"{name} proxied x2" if "2 workers" in label else f"{name} proxied"
        direct, proxied = median(results[f"{name} direct"]), median(results[key])
        print(f"{label:<44}{direct:>8.0f}{proxied:>9.0f}{proxied / direct:>7.2f}  >= 0.5")
    for name, values in results.items():
        print(f"  runs {name:<16} " + " ".join(f"{value:.0f}" for value in values))
    print("CPU per request against the ASGI app (µs, medians): " + ", ".join(
        f"{name} {median(values):.0f}" for name, values in cpu.items()))
    print(f"{size / 1024**3:.1f} GB through the proxy in {seconds:.1f} s ({size / seconds / 1e6:.0f} MB/s): "
          f"proxy RSS {baseline / 1e6:.1f} MB before, peak {peak / 1e6:.1f} MB (target < 100 MB)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve_upstream(int(sys.argv[2]))
    else:
        sys.exit(main())
