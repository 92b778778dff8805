"""The whole pipeline on one machine, with nothing installed but pinsignal: what ``pinsignal demo`` runs.

    from pinsignal.demo import DemoOptions, run_demo

    run_demo(DemoOptions(port=9000, data_dir=Path("/tmp/ps-demo")))   # blocks until Ctrl-C or SIGTERM

It starts, in order: the embedded Redis (unless ``REDIS_URL`` is set), the local Pinterest sandbox
(unless ``PINTEREST_ACCESS_TOKEN`` and ``PINTEREST_AD_ACCOUNT_ID`` are set: then the real API, in
test mode unless ``PINTEREST_TEST_MODE`` says otherwise), the arq delivery worker, the inspector
(``pinsignal inspector``, skipped with one line when its port is busy), DemoPay (the shop's stand-in
payment provider, ``examples/shop/payments.py``: its page takes the checkout, and its webhook from
another process, address and user agent confirms the order; skipped likewise), and the example
shop wrapped by the middleware under uvicorn. It prints what to open; Ctrl-C (or SIGTERM) stops
everything in reverse order (:mod:`pinsignal.supervisor`), so no Redis or worker is left behind.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import importlib.util
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.supervisor import Supervisor

__all__ = ["SANDBOX_ACCOUNT", "SANDBOX_TOKEN", "DemoOptions", "child_environment", "demo_epik", "demo_secret",
           "hints", "load_shop", "port_problem", "run_demo", "shop_dir"]

SANDBOX_TOKEN = "sandbox-token"  # the token the sandbox accepts by default
SANDBOX_ACCOUNT = "549755885175"  # any well-formed id is accepted; this one is Pinterest's spec example
_SHOP_MODULE = "pinsignal_demo_shop"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Where the demo listens and keeps its data; ``data_dir=None`` is ``Config.data_dir``."""

    host: str = "127.0.0.1"
    port: int = 8000
    sandbox_port: int = 8410
    inspector_port: int = 8420
    payments_port: int = 8430
    data_dir: Path | None = None
    hints: bool = True  # the guided hints; False prints only the URLs, one per line
    log_level: str = "info"

    @property
    def url_host(self) -> str:
        """The host to put in a URL: a wildcard address becomes 127.0.0.1, an IPv6 one is bracketed."""
        if self.host in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host else self.host


def run_demo(options: DemoOptions, base: Config | None = None) -> int:
    """Run the demo until Ctrl-C or SIGTERM: 0 for a requested stop, 1 when a child process died.

    ``base`` is the configuration before the demo's defaults (default: the environment). Raises
    :class:`ConfigError` before starting anything when a port cannot be used.
    """
    import uvicorn

    base = base or Config.from_env()
    data_dir = (options.data_dir or base.data_dir).resolve()
    real = base.can_deliver
    if options.port == options.sandbox_port and not real:
        raise ConfigError(f"--port and --sandbox-port are both {options.port}; choose two different ports.")
    for port, flag in [(options.port, "--port")] + ([] if real else [(options.sandbox_port, "--sandbox-port")]):
        problem = port_problem(options.host, port, flag)
        if problem:
            raise ConfigError(problem)
    data_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    try:
        with Supervisor() as children:
            redis_url = _start_redis(base, data_dir, children)
            env = child_environment(options, base, data_dir, redis_url)
            command = [sys.executable, "-m", "pinsignal", "--log-level", options.log_level]
            if not real:
                sandbox = children.spawn("sandbox", [*command, "sandbox", "--host", options.host, "--port",
                                                     str(options.sandbox_port), "--token", SANDBOX_TOKEN], env=env)
                children.wait_for_port(sandbox, options.url_host.strip("[]"), options.sandbox_port)
            # the worker may finish the batch in hand before it stops
            children.spawn("worker", [*command, "worker"], env=env, stop_timeout=15.0)
            inspector = _start_inspector(options, env, command, children)
            payments_url, payments_secret = _start_payments(options, env, children)
            config = Config.from_env(env)
            app = load_shop().create_app(config, payments_url=payments_url, payments_secret=payments_secret)
            if children.stopping.is_set():
                return 0
            server = uvicorn.Server(uvicorn.Config(app, host=options.host, port=options.port,
                                                   log_level=options.log_level, access_log=False, lifespan="on"))

            def watch() -> None:
                nonlocal failed
                while not server.started and not server.should_exit:
                    time.sleep(0.05)
                if server.started:
                    print(hints(options, config, data_dir, real=real, inspector=inspector), flush=True)
                exited = children.wait_for_exit(until=lambda: bool(server.should_exit))
                if exited is not None:
                    print(f"pinsignal demo: the {exited.name} exited with code {exited.process.returncode}; "
                          "stopping.", file=sys.stderr)
                    failed = True
                    server.should_exit = True

            threading.Thread(target=watch, daemon=True).start()
            server.run()
    except KeyboardInterrupt:
        return 0  # Ctrl-C or SIGTERM: a requested, clean stop
    return 1 if failed else 0


def _start_inspector(options: DemoOptions, env: dict[str, str], command: list[str], children: Supervisor) -> bool:
    """The inspector beside the shop; a busy port skips it with one line (the demo is still whole)."""
    from pinsignal.inspector import is_loopback

    host = options.host if is_loopback(options.host) or env.get("PINSIGNAL_ADMIN_TOKEN") else "127.0.0.1"
    problem = port_problem(host, options.inspector_port, "--inspector-port")
    if problem:
        print(f"pinsignal demo: no inspector: {problem}", file=sys.stderr)
        return False
    children.spawn("inspector", [*command, "inspector", "--host", host, "--port", str(options.inspector_port)],
                   env=env)
    return True


def _start_payments(options: DemoOptions, env: dict[str, str], children: Supervisor) -> tuple[str | None, str]:
    """DemoPay in its own process, posting its webhooks to the shop; a busy port skips it with one line
    (the checkout then sends the order at once). Returns its URL and the webhook secret it shares."""
    problem = port_problem(options.host, options.payments_port, "--payments-port")
    if problem:
        print(f"pinsignal demo: no payment page (the checkout sends the order at once): {problem}", file=sys.stderr)
        return None, ""
    secret = secrets.token_urlsafe(24)
    shop = f"http://{options.url_host}:{options.port}"
    payments = children.spawn("payments", [sys.executable, str(shop_dir() / "payments.py"), "--host", options.host,
                                           "--port", str(options.payments_port), "--shop", shop],
                              env={**env, "DEMOPAY_SECRET": secret})
    children.wait_for_port(payments, options.url_host.strip("[]"), options.payments_port)
    return f"http://{options.url_host}:{options.payments_port}", secret


def _start_redis(base: Config, data_dir: Path, children: Supervisor) -> str:
    if base.redis_url:
        return base.redis_url
    from pinsignal.embedded import EmbeddedRedis

    server = EmbeddedRedis(data_dir)
    server.ensure_running()
    if server.process is not None:  # started here (not another demo's server): ours to stop
        children.defer("embedded Redis", server.stop)
    return server.url


def child_environment(options: DemoOptions, base: Config, data_dir: Path, redis_url: str) -> dict[str, str]:
    """What the worker, the sandbox and the shop share: one Redis, one API, one secret."""
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env["PINSIGNAL_DATA_DIR"] = str(data_dir)
    env["PINSIGNAL_SECRET"] = base.secret or demo_secret(data_dir)
    if not base.can_deliver:
        env["PINTEREST_API_URL"] = f"http://{options.url_host}:{options.sandbox_port}"
        env["PINTEREST_AD_ACCOUNT_ID"] = SANDBOX_ACCOUNT
        env["PINTEREST_ACCESS_TOKEN"] = SANDBOX_TOKEN
        env["PINTEREST_TEST_MODE"] = "false"  # the sandbox records nothing from test requests
    elif "PINTEREST_TEST_MODE" not in os.environ:
        env["PINTEREST_TEST_MODE"] = "true"  # real Pinterest: validated, not recorded, until told otherwise
    return env


def hints(options: DemoOptions, config: Config, data_dir: Path, *, real: bool, inspector: bool = True) -> str:
    """What to open once the shop listens: guided, or only the URLs (``options.hints=False``).

    ``config`` is the shop's; ``real`` says it delivers to Pinterest rather than the local sandbox;
    ``inspector`` that the inspector runs (its port was free).
    """
    shop = f"http://{options.url_host}:{options.port}"
    landing = f"{shop}/?epik={demo_epik()}"
    sandbox = f"http://{options.url_host}:{options.sandbox_port}/"
    inspector_host = options.url_host if options.url_host.strip("[]") in ("127.0.0.1", "::1", "localhost") \
        else "127.0.0.1"
    inspector_url = f"http://{inspector_host}:{options.inspector_port}/"
    if not options.hints:
        return (f"shop: {landing}" + ("" if real else f"\nsandbox: {sandbox}")
                + (f"\ninspector: {inspector_url}" if inspector else ""))
    target = (f"Pinterest ad account {config.ad_account_id}"
              + (" in test mode (validated, not recorded)" if config.test_mode else ", LIVE (recorded)")
              if real else "the local Pinterest sandbox (no credentials set)")
    lines = [
        "",
        "pinsignal demo is running. Press Ctrl-C to stop.",
        "",
        "  1. Open the shop as a visitor arriving from a Pinterest ad:",
        f"       {landing}",
        "  2. Browse, add to cart, sign up: each step becomes a Pinterest event. Check out: you pay on",
        "     DemoPay's page (another process), whose webhook confirms the order; the checkout still",
        "     reaches Pinterest with your click id, IP and user agent (docs/webhooks.md).",
    ]
    if real:
        lines.append("  3. Watch them in Ads Manager's Test events view (it shows only what arrives while open).")
    else:
        lines += ["  3. Watch them arrive, with their hashed match keys and click id:", f"       {sandbox}"]
    if inspector:
        lines += ["  4. See what Pinterest sees, live: every stage of every event, warnings, match keys:",
                  f"       {inspector_url}"]
    lines += ["", f"  delivering to {target}", f"  data dir {data_dir}", ""]
    return "\n".join(lines)


def port_problem(host: str, port: int, flag: str) -> str | None:
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
    package = Path(__file__).resolve().parent
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
