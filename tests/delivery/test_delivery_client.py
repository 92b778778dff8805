"""The Pinterest client and its response parsing, with ``httpx.MockTransport``."""

from __future__ import annotations

import email.utils
import logging
from typing import Any

import httpx
import orjson
import pytest

from pinsignal.config import Config
from pinsignal.pinterest.client import PinterestClient, SendResult, parse_response
from pinsignal.retry import RetryPolicy

TOKEN = "pina_SECRET_TOKEN_value_123"
CONFIG = Config(ad_account_id="549755885175", access_token=TOKEN, api_url="https://api.example")


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = b"" if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(("status", "body", "headers", "outcome", "reason"), [
    (200, {"num_events_received": 2, "num_events_processed": 2,
           "events": [{"status": "processed", "error_message": "", "warning_message": ""},
                      {"status": "processed", "error_message": None, "warning_message": "click_id is missing"}]},
     {}, "ok", "ok"),
    (200, {"num_events_received": 2}, {}, "ok", "ok"),                        # no events list: all processed
    (422, {"code": 953, "message": "Not all events...", "details": {
        "events": [{"status": "failed", "error_message": "Invalid event_name: x"}, {"status": "processed"}]}},
     {}, "ok", "rejected"),
    (422, {"code": 953, "message": "no details"}, {}, "split", "bad_request"),
    (400, {"code": 4196, "message": "The request was invalid.", "status": "failure"}, {}, "split", "bad_request"),
    (413, b"too big", {}, "split", "bad_request"),
    (401, {"code": 2, "message": "Authentication failed."}, {}, "pause", "unauthorized"),
    (403, {"code": 29, "message": "You are not permitted to access that resource."}, {}, "pause", "forbidden"),
    (404, {"code": 2, "message": "AdAccount not found."}, {}, "pause", "not_found"),
    (429, {"code": 8, "message": "This request exceeded a rate limit."}, {"Retry-After": "3"}, "retry",
     "rate_limited"),
    (503, {"code": 4197, "message": "ramped down"}, {}, "retry", "server_error"),
    (500, b"<html>oops</html>", {}, "retry", "server_error"),
])
def test_outcomes(status: int, body: Any, headers: dict[str, str], outcome: str, reason: str) -> None:
    result = parse_response(reply(status, body, headers), batch_size=2)
    assert (result.action, result.reason, result.status) == (outcome, reason, status)


def test_per_event_statuses_keep_order_and_tolerate_missing_messages() -> None:
    body = {"num_events_received": 3, "num_events_processed": 1, "unknown_key": {"x": 1}, "events": [
        {"status": "failed", "error_message": "Invalid event_timestamp parameter.", "new_field": 1},
        {"status": "processed"},
        {"status": "failed"}]}
    result = parse_response(reply(422, {"code": 953, "message": "m", "details": body}), batch_size=3)
    assert [(e.processed, e.error_message) for e in result.events] == [
        (False, "Invalid event_timestamp parameter."), (True, ""), (False, "")]
    assert result.message == "m"


def test_all_processed_lists_no_statuses_unless_one_carries_a_warning() -> None:
    quiet = {"num_events_received": 2, "num_events_processed": 2,
             "events": [{"status": "processed", "error_message": "", "warning_message": ""}] * 2}
    assert parse_response(reply(200, quiet), batch_size=2).events == []        # every event processed, nothing to read
    warned = {**quiet, "events": [{"status": "processed"}, {"status": "processed", "warning_message": "no click_id"}]}
    result = parse_response(reply(200, warned), batch_size=2)
    assert [(status.processed, status.warning_message) for status in result.events] == [
        (True, ""), (True, "no click_id")]


def test_a_status_list_of_the_wrong_length_is_not_trusted() -> None:
    result = parse_response(reply(200, {"events": [{"status": "failed"}]}), batch_size=2)
    assert result.action == "ok" and result.events == []


def test_retry_headers() -> None:
    now = 1_800_000_000.0

    def asked(headers: dict[str, str], rate_limited: bool = True) -> float | None:
        return RetryPolicy().asked_delay(httpx.Headers(headers), rate_limited=rate_limited, now=now)

    assert asked({"Retry-After": "7"}) == 7
    assert asked({"X-RateLimit-Reset": "58"}) == 58
    assert asked({"X-RateLimit-Reset": "58"}, rate_limited=False) is None
    assert asked({"X-RateLimit-Reset": str(int(now) + 12)}) == 12                            # epoch form
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert asked({"Retry-After": date}) == pytest.approx(30, abs=1)
    assert asked({"Retry-After": "99999"}) == 300                                           # capped
    assert asked({"Retry-After": "soon"}) is None
    assert asked({}) is None
    result = parse_response(reply(429, {"code": 8, "message": "m"}, {"X-RateLimit-Reset": "2"}), 1)
    assert result.delay == 2
    result = parse_response(reply(503, {"code": 1, "message": "m"}, {"X-RateLimit-Reset": "58"}), 1)
    assert result.delay is None                   # the window's reset is no reason to wait after a 503


@pytest.mark.anyio
async def test_request_shape_test_mode_and_no_cookie_jar(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"events": [{"status": "processed"}]},
                              headers={"Set-Cookie": "tracker=abc; Path=/"})

    caplog.set_level(logging.DEBUG)
    client = PinterestClient(CONFIG.with_(test_mode=True), transport=httpx.MockTransport(handler))
    try:
        for _ in range(2):
            result = await client.send("549755885175", b'{"data":[{}]}', 1)
            assert result.action == "ok"
    finally:
        await client.aclose()
    first, second = seen
    assert str(first.url) == "https://api.example/v5/ad_accounts/549755885175/events?test=true"
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["content-type"] == "application/json"
    assert "cookie" not in second.headers                       # the Set-Cookie was not kept
    assert len(client.http.cookies.jar) == 0
    assert TOKEN not in caplog.text


@pytest.mark.anyio
async def test_timeouts_and_connection_errors_are_retried() -> None:
    errors = iter([httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.RemoteProtocolError("eof")])

    def handler(request: httpx.Request) -> httpx.Response:
        raise next(errors)

    client = PinterestClient(CONFIG, transport=httpx.MockTransport(handler))
    try:
        results: list[SendResult] = [await client.send("1", b"{}", 1) for _ in range(3)]
    finally:
        await client.aclose()
    assert [(r.action, r.reason) for r in results] == [
        ("retry", "timeout"), ("retry", "connection_error"), ("retry", "connection_error")]


def test_test_mode_batches_are_twenty() -> None:
    assert CONFIG.batch_size == 1000
    assert CONFIG.with_(test_mode=True).batch_size == 20
