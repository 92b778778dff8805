"""``pinsignal.worker.run``: a worker that Redis dropped mid-poll starts again, within the outage budget."""

from __future__ import annotations

from typing import Any

import arq.worker
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pinsignal.retry import RetryPolicy
from pinsignal.worker import run


def test_regression_a_connection_reset_during_hello_starts_the_worker_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the fault suite saw: arq's poll asked for a new connection while Redis restarted, the hello
    # was reset (redis-py retries commands, not that), and the worker process ended with events queued.
    calls: list[dict[str, Any]] = []

    def run_worker(settings: dict[str, Any]) -> None:
        calls.append(settings)
        if len(calls) < 3:
            raise RedisConnectionError("Error while reading from redis.sock : (104, 'Connection reset by peer')")

    monkeypatch.setattr(arq.worker, "run_worker", run_worker)
    run({"queue_name": "q"}, RetryPolicy(redis_retry_base=0.001))
    assert len(calls) == 3 and all(settings == {"queue_name": "q"} for settings in calls)


def test_an_outage_past_the_budget_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_worker(settings: dict[str, Any]) -> None:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(arq.worker, "run_worker", run_worker)
    policy = RetryPolicy(redis_retry_base=0.001, worker_redis_retries=2, worker_redis_retry_cap=0.01)
    with pytest.raises(RedisConnectionError):
        run({}, policy)


def test_any_other_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def run_worker(settings: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    monkeypatch.setattr(arq.worker, "run_worker", run_worker)
    with pytest.raises(ValueError):
        run({})
    assert calls == 1
