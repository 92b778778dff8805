"""Fault injection and rate limiting, over real HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from pinsignal.sandbox import SandboxClient

pytestmark = pytest.mark.integration

RATE_LIMITED = {"code": 8, "message": "This request exceeded a rate limit. This can happen if the client exceeds one\n"
                                      "of the published rate limits within a short time window."}


def test_status_fault_answers_the_next_n_calls_then_recovers(sandbox_server: SandboxClient, make_event: Any) -> None:
    plan = sandbox_server.fault(status=503, count=2, retry_after=1.5)
    assert plan["statuses"] == [{"status": 503, "remaining": 2, "retry_after": 1.5, "ratelimit_reset": None}]
    for _ in range(2):
        response = sandbox_server.send([make_event()])
        assert response.status_code == 503
        assert response.json() == {"code": 4197, "message": "The endpoint has been ramped down and is currently "
                                                             "not accepting any traffic."}
        assert response.headers["retry-after"] == "1.5"
        assert "x-pinterest-rid" in response.headers
    assert sandbox_server.events() == []
    assert sandbox_server.send([make_event()]).status_code == 200
    stats = sandbox_server.stats()
    assert stats["requests"] == {"200": 1, "503": 2}
    assert stats["faults_injected"] == 2
    assert stats["events_recorded"] == 1


def test_faults_queue_in_order_and_apply_before_authentication(sandbox_server: SandboxClient,
                                                               make_event: Any) -> None:
    sandbox_server.fault(status=500)
    sandbox_server.fault(status=429, ratelimit_reset=17)
    first = sandbox_server.send([make_event()], token="wrong")
    assert first.status_code == 500
    assert first.json() == {"code": 500, "message": "Internal server error; please retry later."}
    second = sandbox_server.send([make_event()])
    assert second.status_code == 429
    assert second.json() == RATE_LIMITED
    assert (second.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-reset"]) == ("0", "17")
    assert "retry-after" not in second.headers
    assert sandbox_server.send([make_event()], token="wrong").status_code == 401


@pytest.mark.parametrize(("status", "code"), [(401, 2), (403, 29), (400, 4196), (502, 502), (504, 504)])
def test_injected_statuses_carry_pinterest_bodies(sandbox_server: SandboxClient, make_event: Any,
                                                  status: int, code: int) -> None:
    sandbox_server.fault(status=status)
    response = sandbox_server.send([make_event()])
    assert response.status_code == status
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message"}


def test_injected_422_fails_every_event_in_the_request(sandbox_server: SandboxClient, make_event: Any) -> None:
    sandbox_server.fault(status=422)
    response = sandbox_server.send([make_event(), make_event()])
    assert response.status_code == 422
    details = response.json()["details"]
    assert (details["num_events_received"], details["num_events_processed"]) == (2, 0)
    assert [entry["status"] for entry in details["events"]] == ["failed", "failed"]


def test_delay_makes_a_client_time_out_then_answers_normally(sandbox_server: SandboxClient,
                                                             make_event: Any) -> None:
    sandbox_server.fault(delay=1.0, delay_count=1)
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(sandbox_server.events_url, json={"data": [make_event()]}, headers=sandbox_server.headers)
    started = time.monotonic()
    assert sandbox_server.send([make_event()]).status_code == 200
    assert time.monotonic() - started < 0.9  # the delay applied to one call only


def test_delay_until_cleared(sandbox_server: SandboxClient, make_event: Any) -> None:
    sandbox_server.fault(delay=0.3)
    for _ in range(2):
        started = time.monotonic()
        assert sandbox_server.send([make_event()]).status_code == 200
        assert time.monotonic() - started >= 0.3
    sandbox_server.clear_faults()
    assert sandbox_server.stats()["faults"] == {"statuses": [], "delay": None}


def test_calls_per_minute_limit_answers_429_with_headers(sandbox_server: SandboxClient, make_event: Any) -> None:
    sandbox_server.fault(calls_per_minute=2)
    first, second, third = (sandbox_server.send([make_event()]) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-limit"] == '2, 2;w=60;name="ads_conversions_ad_account_id"'
    assert [r.headers["x-ratelimit-remaining"] for r in (first, second, third)] == ["1", "0", "0"]
    assert 0 < int(third.headers["x-ratelimit-reset"]) <= 60
    assert third.json() == RATE_LIMITED
    # the limit is per ad account
    assert sandbox_server.send([make_event()], account_id="77").status_code == 200
    assert sandbox_server.stats()["events_recorded"] == 3
    sandbox_server.clear_faults()
    assert sandbox_server.send([make_event()]).headers["x-ratelimit-limit"].startswith("5000, ")


@pytest.mark.parametrize(("spec", "message"), [
    ({"status": 200}, "fault status must be an error status (4xx or 5xx), got 200."),
    ({"status": "503"}, "fault field 'status' must be a whole number, got '503'."),
    ({"status": 503, "count": 0}, "fault field 'count' must be between 1 and 1e+06, got 0."),
    ({"count": 2}, "'count', 'retry_after' and 'ratelimit_reset' need a 'status' to apply to."),
    ({"delay": -1}, "fault field 'delay' must be between 0 and 3600, got -1."),
    ({"stauts": 503}, "unknown fault field 'stauts'"),
    ({"calls_per_minute": True}, "fault field 'calls_per_minute' must be a whole number, got True."),
])
def test_bad_fault_requests_are_refused_and_change_nothing(sandbox_server: SandboxClient, spec: dict[str, Any],
                                                           message: str) -> None:
    response = sandbox_server.http.post("/_sandbox/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"Invalid fault: {message}"), response.json()
    assert sandbox_server.stats()["faults"] == {"statuses": [], "delay": None}
    not_object = sandbox_server.http.post("/_sandbox/faults", json=[1])
    assert not_object.status_code == 400


def test_reset_clears_faults(sandbox_server: SandboxClient, make_event: Any) -> None:
    sandbox_server.fault(status=503, count=5)
    sandbox_server.fault(calls_per_minute=1)
    sandbox_server.reset()
    assert [sandbox_server.send([make_event()]).status_code for _ in range(2)] == [200, 200]


def test_a_call_waiting_on_a_delay_when_the_sandbox_is_reset_records_nothing(sandbox_server: SandboxClient,
                                                                           make_event: Any) -> None:
    sandbox_server.fault(delay=0.5, delay_count=1)
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(sandbox_server.send([make_event()])))
    waiting.start()
    deadline = time.monotonic() + 10
    while sandbox_server.stats()["faults"]["delay"] is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # the delay is consumed when the call arrives
    sandbox_server.reset()
    waiting.join(10)
    assert answers[0].status_code == 500
    assert "reset while this call waited" in answers[0].json()["message"]
    assert sandbox_server.stats()["requests_total"] == 0
    assert sandbox_server.events() == []
