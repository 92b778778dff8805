"""Helpers shared by the test suite: real servers on free ports, subprocesses, tool checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(ok: object, reason: str) -> None:
    """Skip on a developer laptop when an optional tool is missing; fail in CI, never skip."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("PINSIGNAL_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                      shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0,
                  process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class ServerThread:
    """A real uvicorn server in a background thread (lifespan on), stopped on exit."""

    def __init__(self, app: Any, port: int | None = None, **options: Any) -> None:
        self.port = port or free_port()
        options.setdefault("log_level", "warning")
        options.setdefault("lifespan", "on")
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def run_process(args: Sequence[str], *, port: int | None = None, env: dict[str, str] | None = None,
                cwd: Path | None = None, timeout: float = 30.0, log: Path | None = None
                ) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command (e.g. ``[sys.executable, "-m", "pinsignal", "sandbox", ...]``) until the block ends."""
    full_env = {**os.environ, **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(list(args), env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
                               if log else subprocess.DEVNULL, start_new_session=True)
    try:
        if port is not None:
            wait_for_port(port, timeout=timeout, process=process)
        yield process
    finally:
        stop_process(process)
        if log:
            out.close()  # type: ignore[union-attr]


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def pinsignal_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pinsignal", *args]


# Three routed ad accounts beside the default one (PINSIGNAL_ACCOUNTS): by host, by a server
# source's write-key name, and by a condition on the event. Used by the import and replay tests.
DEFAULT_ACCOUNT = "549755885175"
EU_ACCOUNT, WHOLESALE_ACCOUNT, OUTLET_ACCOUNT = "549755885176", "549755885177", "549755885178"
_ROUTED_ACCOUNTS = f"""\
accounts:
  - id: "{EU_ACCOUNT}"
    token_env: SHOP_TOKEN_EU
    match:
      hosts: ["shop.example.eu", "*.shop.example.eu"]
  - id: "{WHOLESALE_ACCOUNT}"
    token_env: SHOP_TOKEN_WHOLESALE
    match:
      sources: [wholesale]
  - id: "{OUTLET_ACCOUNT}"
    token_env: SHOP_TOKEN_OUTLET
    match:
      conditions:
        - {{field: properties.store, operator: equals, value: outlet}}
"""


def routed_accounts_file(folder: Path) -> Path:
    """Write the three routed accounts above to ``folder/accounts.yaml`` and return its path."""
    path = folder / "accounts.yaml"
    path.write_text(_ROUTED_ACCOUNTS)
    return path
