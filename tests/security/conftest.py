"""Fixtures of the hostile-input suite: the real web process (uvicorn in its own process) on real Redis."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The privacy test runs the fault suite's whole installation (tests/faults/fault_harness.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))
from security_support import WebProcess, start_web

from pinsignal.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A Redis of this module's own, so every key in it came from this module's requests."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.ensure_running()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web(own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """The web process under attack (trusted proxies: only 127.0.0.1, the default)."""
    yield from start_web(own_redis.url, tmp_path_factory.mktemp("web") / "web.log")
