"""Shared pieces of the middleware and collector benchmarks: servers in their own process, a load generator.

The load generator is ``wrk`` when installed (``apt-get install wrk``); otherwise a small keep-alive
HTTP/1.1 client over raw sockets, run in several processes (one Python client process tops out
well below what uvicorn serves).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "middleware"), str(ROOT / "tests")]

from support import free_port, stop_process, wait_for_port  # noqa: E402

WRK = shutil.which("wrk")


@contextmanager
def server(script: Path, variant: str, *extra: str) -> Any:
    """``python script serve VARIANT PORT ...`` in its own process; yields the port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), "serve", variant, str(port), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, timeout=30, process=process)
        yield port
    finally:
        stop_process(process)


def instructions(pid: int, folder: Path, action: Callable[[], object]) -> tuple[int, float]:
    """User-space instructions a process under ``valgrind --tool=callgrind`` spends while ``action``
    runs, and the seconds that took: its counters are zeroed before and dumped after (into
    ``folder``, where its ``--callgrind-out-file`` is), so start-up never counts."""
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)
    started = time.monotonic()
    action()
    elapsed = time.monotonic() - started
    before = set(folder.iterdir())
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    [dump] = set(folder.iterdir()) - before
    found = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.MULTILINE)
    assert found is not None, dump
    return int(found.group(1)), elapsed


def run_uvicorn(app: Any, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="on")


def _wrk_script(method: str, path: str, headers: dict[str, str], body_template: str | None) -> str:
    lines = ["counter = 0", "request = function()", "  counter = counter + 1"]
    header_table = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    if body_template is None:
        lines.append(f'  return wrk.format("{method}", "{path}", {header_table}, nil)')
    else:
        template = body_template.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'  local body = string.gsub("{template}", "@N@", tostring(counter) .. "-" .. '
                     f'tostring(math.random(1, 1000000000)))')
        lines.append(f'  return wrk.format("{method}", "{path}", {header_table}, body)')
    lines.append("end")
    return "\n".join(lines) + "\n"


def load(port: int, *, path: str, method: str = "GET", headers: dict[str, str] | None = None,
         body_template: str | None = None, seconds: float = 3.0, connections: int = 32) -> float:
    """Requests per second (2xx/3xx only) for ``seconds``; ``@N@`` in the body becomes a unique number."""
    headers = headers or {}
    if WRK:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
            handle.write(_wrk_script(method, path, headers, body_template))
        try:
            out = subprocess.run([WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", handle.name,
                                  f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
        finally:
            os.unlink(handle.name)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if bad:
            raise RuntimeError(f"{bad.group(1)} failed responses:\n{out}")
        return rate
    return _python_load(port, path, method, headers, body_template, seconds, connections)


def _python_load(port: int, path: str, method: str, headers: dict[str, str], body_template: str | None,
                 seconds: float, connections: int) -> float:
    workers = max(2, (os.cpu_count() or 2))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        counts = pool.starmap(_client, [(port, path, method, headers, body_template, seconds,
                                         max(1, connections // workers), index) for index in range(workers)])
    return sum(counts) / seconds


def _client(port: int, path: str, method: str, headers: dict[str, str], body_template: str | None,
            seconds: float, connections: int, worker: int) -> int:
    import asyncio

    async def one(connection: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            body = (body_template or "").replace("@N@", f"{worker}-{connection}-{done}").encode()
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers.items())
            if body_template is not None:
                head += f"Content-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status.split()[1][:1] in (b"2", b"3"):
                done += 1
        writer.close()
        return done

    async def main() -> int:
        return sum(await asyncio.gather(*(one(index) for index in range(connections))))

    return asyncio.run(main())


def interleaved(measure: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Run each measurement once per round, in rotating order, so drift hits them all alike."""
    results: dict[str, list[float]] = {name: [] for name in measure}
    names = list(measure)
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            results[name].append(measure[name]())
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
