"""RetryPolicy: which answers retry, the back-off, the maximum age and the Redis outage policy."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from pinsignal.config import Config
from pinsignal.errors import QueueUnavailable
from pinsignal.pinterest.client import PinterestClient, parse_response
from pinsignal.pinterest.contract import MAX_EVENT_AGE
from pinsignal.queue import EventQueue
from pinsignal.retry import RetryPolicy


@pytest.mark.parametrize(("status", "action"), [
    (400, "split"), (413, "split"), (422, "split"), (418, "split"),
    (401, "pause"), (403, "pause"), (404, "pause"),
    (408, "retry"), (409, "retry"), (425, "retry"), (429, "retry"),
    (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"), (599, "retry"),
])
def test_which_answers_retry_pause_or_split(status: int, action: str) -> None:
    assert RetryPolicy().action(status) == action


def test_the_answers_can_be_changed_in_one_place() -> None:
    policy = RetryPolicy(retry_statuses=frozenset({429, 400}), pause_statuses=frozenset({401}))
    assert [policy.action(status) for status in (400, 403, 404, 429)] == ["retry", "split", "split", "retry"]


def test_backoff_is_full_jitter_doubling_to_the_cap_and_never_shorter_than_asked() -> None:
    policy = RetryPolicy()
    random.seed(7)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)):
        waits = [policy.backoff(failures) for _ in range(400)]
        assert 0 <= min(waits) and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.9 and min(waits) < ceiling * 0.1        # spread over the whole range
    assert all(policy.backoff(1, asked=5.0) >= 5.0 for _ in range(50))          # Retry-After is honoured
    assert max(RetryPolicy(backoff_base=0.1).backoff(1) for _ in range(200)) <= 0.2


def test_maximum_age() -> None:
    now = 1_800_000_000.0
    policy = RetryPolicy()
    assert policy.max_age == MAX_EVENT_AGE == 7 * 86400
    assert policy.expired(int(now) - MAX_EVENT_AGE - 1, now)
    assert not policy.expired(int(now) - MAX_EVENT_AGE, now)
    assert not policy.expired(None, now)                                        # unknown time: send it
    assert RetryPolicy(max_age=60).expired(int(now) - 61, now)


@pytest.mark.anyio
async def test_a_web_process_rides_out_redis_trouble_for_the_policys_retries_then_gives_up(tmp_path: Path) -> None:
    nowhere = Config(redis_url=f"unix://{tmp_path}/nothing.sock", ad_account_id="549755885175")

    async def seconds_to_give_up(policy: RetryPolicy) -> float:
        queue = await EventQueue.connect(nowhere, policy)
        started = time.monotonic()
        try:
            with pytest.raises(QueueUnavailable):
                await queue.enqueue([{"event_name": "checkout", "event_id": "o-1"}])
            return time.monotonic() - started
        finally:
            await queue.close()

    patient = RetryPolicy(enqueue_retries=3, enqueue_retry_cap=0.2, redis_retry_base=0.2)
    assert await seconds_to_give_up(patient) >= 0.6                              # three waits of 0.2 s
    assert await seconds_to_give_up(RetryPolicy(enqueue_retries=0)) < 0.5


def test_the_client_reads_the_policy() -> None:
    policy = RetryPolicy(retry_statuses=frozenset({400}))
    client = PinterestClient(Config(ad_account_id="549755885175", access_token="pina_test"), policy=policy)
    assert client.policy is policy
    assert parse_response(httpx.Response(400, json={"message": "m"}), 1, policy).action == "retry"
    assert parse_response(httpx.Response(400, json={"message": "m"}), 1).action == "split"
