"""``pinsignal demo``: the whole pipeline on one machine, with nothing installed but pinsignal.

One command starts, in order: the embedded Redis (unless ``REDIS_URL`` is set), the local Pinterest
sandbox (unless ``PINTEREST_ACCESS_TOKEN`` and ``PINTEREST_AD_ACCOUNT_ID`` are set: then the real API,
in test mode unless ``PINTEREST_TEST_MODE`` says otherwise), the arq delivery worker, and the example
shop wrapped by the middleware under uvicorn. It prints what to open, and Ctrl-C (or SIGTERM) stops
everything in reverse order, so no Redis or worker is left behind.

    pinsignal demo                       # shop on :8000, sandbox on :8410, data in .pinsignal/
    pinsignal demo --port 9000 --sandbox-port 9410 --data-dir /tmp/ps-demo
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import importlib.util
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from pinsignal.config import Config
from pinsignal.errors import ConfigError

logger = logging.getLogger("pinsignal.demo")

SANDBOX_TOKEN = "sandbox-token"  # the token the sandbox accepts by default
SANDBOX_ACCOUNT = "549755885175"  # any well-formed id is accepted; this one is Pinterest's spec example
_SHOP_MODULE = "pinsignal_demo_shop"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port of the example shop (default: %(default)s)")
    parser.add_argument("--sandbox-port", type=int, default=8410,
                        help="port of the local Pinterest sandbox (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the embedded Redis and the demo secret live (default: PINSIGNAL_DATA_DIR "
                             "or .pinsignal)")
    parser.add_argument("--no-browser-hints", action="store_true",
                        help="print only the URLs, one per line, instead of the guided hints")


def run(args: argparse.Namespace) -> int:
    base = Config.from_env()
    data_dir: Path = (args.data_dir or base.data_dir).resolve()
    real = base.can_deliver
    ports = [(args.port, "--port")] + ([] if real else [(args.sandbox_port, "--sandbox-port")])
    if args.port == args.sandbox_port and not real:
        print(f"pinsignal demo: --port and --sandbox-port are both {args.port}; choose two different ports.",
              file=sys.stderr)
        return 2
    for port, flag in ports:
        problem = _port_problem(args.host, port, flag)
        if problem:
            print(f"pinsignal demo: {problem}", file=sys.stderr)
            return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(args, base, data_dir)
    return demo.run()


def _port_problem(host: str, port: int, flag: str) -> str | None:
    """One sentence when ``port`` cannot be used, naming the flag that chooses another."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # uvicorn sets SO_REUSEADDR too: a port held only by TIME_WAIT sockets of a previous run is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; choose another with {flag} {port + 1}."
            return f"cannot listen on {host}:{port} ({exc.strerror}); choose another with {flag}."
    return None


def demo_secret(data_dir: Path) -> str:
    """``PINSIGNAL_SECRET`` for the demo: generated once and kept in the data dir (mode 0600)."""
    path = data_dir / "secret"
    with contextlib.suppress(FileNotFoundError):
        stored = path.read_text().strip()
        if len(stored) >= 16:
            return stored
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def demo_epik() -> str:
    """A landing click id shaped like Pinterest's (base64 of ``v=2&u=...&t=...``), random each run."""
    raw = f"v=2&u={secrets.token_hex(8)}&p=1&n={secrets.token_urlsafe(12)}&t={int(time.time())}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def shop_dir() -> Path:
    """The example shop: inside the installed package (wheel), else ``examples/shop`` of the checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "demo_shop"
    if installed.is_dir():
        return installed
    return package.parent.parent / "examples" / "shop"


def load_shop() -> ModuleType:
    """Import the example shop package (it uses relative imports, so it is loaded as a package)."""
    if _SHOP_MODULE in sys.modules:
        return sys.modules[_SHOP_MODULE]
    path = shop_dir()
    spec = importlib.util.spec_from_file_location(
        _SHOP_MODULE, path / "__init__.py", submodule_search_locations=[str(path)]
    )
    if spec is None or spec.loader is None or not path.is_dir():
        raise ConfigError(f"the example shop was not found at {str(path)!r}; reinstall pinsignal.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_SHOP_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[_SHOP_MODULE]
        raise ConfigError(
            f"the example shop needs FastAPI ({exc}); install it with: pip install 'pinsignal[demo]'."
        ) from exc
    return module


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Own process group: a terminal's Ctrl-C reaches only the demo, which then stops the children in
    # order. On Linux the kernel also SIGTERMs them if the demo dies without cleaning up.
    os.setpgrp()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Demo:
    """The demo's processes and their orderly start and stop."""

    def __init__(self, args: argparse.Namespace, base: Config, data_dir: Path) -> None:
        self.args = args
        self.base = base
        self.data_dir = data_dir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.redis: Any = None  # EmbeddedRedis when this process started it
        self.stopping = threading.Event()
        self.failed = False

    # ------------------------------------------------------------------ environment

    def child_environment(self, redis_url: str) -> dict[str, str]:
        """What the worker, the sandbox and the shop share: one Redis, one API, one secret."""
        env = dict(os.environ)
        env["REDIS_URL"] = redis_url
        env["PINSIGNAL_DATA_DIR"] = str(self.data_dir)
        env["PINSIGNAL_SECRET"] = self.base.secret or demo_secret(self.data_dir)
        if not self.base.can_deliver:
            env["PINTEREST_API_URL"] = f"http://{self.url_host}:{self.args.sandbox_port}"
            env["PINTEREST_AD_ACCOUNT_ID"] = SANDBOX_ACCOUNT
            env["PINTEREST_ACCESS_TOKEN"] = SANDBOX_TOKEN
            env["PINTEREST_TEST_MODE"] = "false"  # the sandbox records nothing from test requests
        elif "PINTEREST_TEST_MODE" not in os.environ:
            env["PINTEREST_TEST_MODE"] = "true"  # real Pinterest: validated, not recorded, until told otherwise
        return env

    @property
    def log_level(self) -> str:
        return str(getattr(self.args, "log_level", "info"))

    @property
    def url_host(self) -> str:
        host: str = self.args.host
        if host in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        import uvicorn

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for sig in previous:
                signal.signal(sig, self._on_signal)
            redis_url = self.start_redis()
            env = self.child_environment(redis_url)
            if not self.base.can_deliver:
                self.spawn("sandbox", ["sandbox", "--host", self.args.host, "--port", str(self.args.sandbox_port),
                                      "--token", SANDBOX_TOKEN], env)
                self.wait_for_port(self.args.sandbox_port, "sandbox")
            self.spawn("worker", ["worker"], env)
            config = Config.from_env(env)
            app = load_shop().create_app(config)
            if self.stopping.is_set():
                return 0
            server = uvicorn.Server(uvicorn.Config(
                app, host=self.args.host, port=self.args.port, log_level=self.log_level, access_log=False,
                lifespan="on",
            ))
            watcher = threading.Thread(target=self.watch, args=(server, config), daemon=True)
            watcher.start()
            server.run()
            return 1 if self.failed else 0
        except KeyboardInterrupt:
            return 0  # Ctrl-C or SIGTERM: a requested, clean stop
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # SIGINT or SIGTERM while starting, or re-raised by uvicorn once it has stopped serving: unwind
        # to run()'s finally block, which stops everything in order. A second signal while stopping
        # is ignored, so the worker can finish its batch (stop() has its own time limits).
        if not self.stopping.is_set():
            self.stopping.set()
            raise KeyboardInterrupt

    def start_redis(self) -> str:
        if self.base.redis_url:
            return self.base.redis_url
        from pinsignal.embedded import EmbeddedRedis

        server = EmbeddedRedis(self.data_dir)
        server.ensure_running()
        if server.process is not None:  # started here (not another demo's server): ours to stop
            self.redis = server
        return server.url

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        args = [sys.executable, "-m", "pinsignal", "--log-level", self.log_level, *command]
        process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        self.children.append((name, process))
        logger.info("started the %s (pid %d)", name, process.pid)

    def wait_for_port(self, port: int, name: str, timeout: float = 30.0) -> None:
        process = self.children[-1][1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConfigError(f"the {name} exited with code {process.returncode} before it was ready.")
            with contextlib.suppress(OSError), socket.create_connection((self.url_host.strip("[]"), port), 0.2):
                return
            if self.stopping.wait(0.05):
                raise KeyboardInterrupt
        raise ConfigError(f"the {name} did not listen on port {port} within {timeout:.0f} s.")

    def watch(self, server: Any, config: Config) -> None:
        """Print the hints once the shop listens; stop the demo if a child process dies."""
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            self.print_hints(config)
        while not server.should_exit:
            for name, process in self.children:
                if process.poll() is not None:
                    print(f"pinsignal demo: the {name} exited with code {process.returncode}; stopping.",
                          file=sys.stderr)
                    self.failed = True
                    server.should_exit = True
                    return
            time.sleep(0.2)

    def print_hints(self, config: Config) -> None:
        shop = f"http://{self.url_host}:{self.args.port}"
        landing = f"{shop}/?epik={demo_epik()}"
        sandbox = f"http://{self.url_host}:{self.args.sandbox_port}/"
        real = self.base.can_deliver
        if self.args.no_browser_hints:
            print(f"shop: {landing}")
            if not real:
                print(f"sandbox: {sandbox}")
            sys.stdout.flush()
            return
        target = (f"Pinterest ad account {config.ad_account_id}"
                  + (" in test mode (validated, not recorded)" if config.test_mode else ", LIVE (recorded)")
                  if real else "the local Pinterest sandbox (no credentials set)")
        lines = [
            "",
            "pinsignal demo is running. Press Ctrl-C to stop.",
            "",
            "  1. Open the shop as a visitor arriving from a Pinterest ad:",
            f"       {landing}",
            "  2. Browse, add to cart, check out, sign up: each step becomes a Pinterest event.",
        ]
        if real:
            lines.append("  3. Watch them in Ads Manager's Test events view (it shows only what arrives while open).")
        else:
            lines += ["  3. Watch them arrive, with their hashed match keys and click id:", f"       {sandbox}"]
        lines += ["", f"  delivering to {target}", f"  data dir {self.data_dir}", ""]
        print("\n".join(lines), flush=True)

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Stop the worker (it finishes its batch), then the sandbox, then Redis: nothing is orphaned."""
        self.stopping.set()
        for name, process in reversed(self.children):
            _terminate(process, name, timeout=15.0 if name == "worker" else 5.0)
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def _terminate(process: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the %s did not stop within %.0f s; killing it", name, timeout)
            process.kill()
            process.wait()

