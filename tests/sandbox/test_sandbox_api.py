"""The sandbox over real HTTP (session uvicorn server, reset per test): statuses, bodies, headers."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson
import pytest

from pinsignal.sandbox import SandboxClient

pytestmark = pytest.mark.integration

RATE_LIMIT = re.compile(r'^(\d+), \1;w=60;name="ads_conversions_ad_account_id"$')


def post(sandbox: SandboxClient, body: bytes | str, *, headers: dict[str, str] | None = None,
         account: str | None = None, params: dict[str, str] | None = None) -> httpx.Response:
    return sandbox.http.post(f"/v5/ad_accounts/{account or sandbox.account_id}/events",
                      content=body, headers=headers if headers is not None else sandbox.headers, params=params)


def assert_pinterest_headers(response: httpx.Response) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-pinterest-rid"])
    assert RATE_LIMIT.match(response.headers["x-ratelimit-limit"]), response.headers["x-ratelimit-limit"]
    assert response.headers["x-ratelimit-remaining"].isdigit()
    assert response.headers["x-ratelimit-reset"].isdigit()
    assert response.headers["content-type"] == "application/json"


def test_valid_batch_is_processed_recorded_and_answered_in_pinterest_shape(sandbox_server: SandboxClient,
                                                                           make_event: Any) -> None:
    events = [make_event(), make_event(event_name="page_visit")]
    response = sandbox_server.send(events)
    assert response.status_code == 200
    assert response.json() == {
        "num_events_received": 2,
        "num_events_processed": 2,
        "events": [{"status": "processed", "error_message": "", "warning_message": ""}] * 2,
    }
    assert_pinterest_headers(response)
    assert response.headers["x-ratelimit-limit"].startswith("5000, ")
    assert response.headers["x-ratelimit-remaining"] == "4999"

    recorded = sandbox_server.events()
    assert [item["event"] for item in recorded] == events
    assert {item["request_id"] for item in recorded} == {response.headers["x-pinterest-rid"]}
    assert all(item["ad_account_id"] == sandbox_server.account_id and not item["duplicate"] for item in recorded)
    assert abs(recorded[0]["received_at"] - time.time()) < 60
    stats = sandbox_server.stats()
    assert stats["requests"] == {"200": 1}
    assert (stats["events_received"], stats["events_recorded"], stats["duplicates"]) == (2, 2, 0)


def test_missing_external_id_and_click_id_are_warnings_not_failures(sandbox_server: SandboxClient,
                                                                    make_event: Any) -> None:
    event = make_event(user_data={"em": ["c" * 64]})
    body = sandbox_server.send([event]).json()
    assert body["events"][0]["status"] == "processed"
    assert body["events"][0]["warning_message"] == (
        "external_id is missing. We highly recommend this on all events.; click_id is missing")


def test_unknown_but_well_formed_event_name_is_processed_with_a_warning(sandbox_server: SandboxClient,
                                                                        make_event: Any) -> None:
    response = sandbox_server.send([make_event(event_name="subscription")])
    assert response.status_code == 200
    entry = response.json()["events"][0]
    assert entry["status"] == "processed"
    assert "non-standard name" in entry["warning_message"]
    assert len(sandbox_server.events()) == 1


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"{not json", "application/json", "Invalid request: the body is not valid JSON"),
    (b'{"data": []}', "text/plain", "Invalid request: Content-Type must be application/json, got 'text/plain'"),
    (b"[]", "application/json", 'Invalid request: the body must be a JSON object like {"data": [...]}'),
    (b'{"data": [], "extra": 1}', "application/json",
     "Invalid request: Additional properties are not allowed ('extra' was unexpected)"),
    (b'{"events": []}', "application/json", "Invalid request: Additional properties are not allowed"),
    (b"{}", "application/json", "Invalid request: 'data' is a required property"),
    (b'{"data": []}', "application/json", "Invalid request: data: expected at least 1 event"),
    (b'{"data": {}}', "application/json", "Invalid request: data: expected an array of events"),
])
def test_malformed_requests_answer_400_and_record_nothing(sandbox_server: SandboxClient, body: bytes,
                                                          content_type: str, message: str) -> None:
    response = post(sandbox_server, body, headers={**sandbox_server.headers, "content-type": content_type})
    assert response.status_code == 400
    assert response.json()["code"] == 4196
    assert response.json()["message"].startswith(message), response.json()
    assert set(response.json()) == {"code", "message"}
    assert_pinterest_headers(response)
    assert sandbox_server.stats()["events_received"] == 0


def test_more_than_1000_events_is_a_400(sandbox_server: SandboxClient, make_event: Any) -> None:
    response = sandbox_server.send([make_event() for _ in range(1001)])
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid request: data: expected at most 1000 events, got 1001"


def test_one_schema_error_rejects_the_whole_request_naming_the_path(sandbox_server: SandboxClient,
                                                                    make_event: Any) -> None:
    good = make_event()
    bad = make_event(custom_data={"value": 72.39})
    response = sandbox_server.send([good, bad])
    assert response.status_code == 400
    assert response.json() == {"code": 4196,
                               "message": "Invalid request: data[1].custom_data.value: expected a string, got 72.39"}
    assert sandbox_server.events() == []


def test_schema_errors_in_several_events_are_counted(sandbox_server: SandboxClient, make_event: Any) -> None:
    events = [make_event(), make_event(event_time="soon"), make_event(user_data={"click_id": "x"})]
    message = sandbox_server.send(events).json()["message"]
    assert message.startswith("Invalid request: data[1].event_time:")
    assert "data[2].user_data" in message
    assert message.endswith("(2 of 3 events are invalid)")


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic sandbox-token", "Bearer", "sandbox-token"])
def test_missing_or_unknown_token_is_401(sandbox_server: SandboxClient, make_event: Any,
                                         authorization: str | None) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    response = post(sandbox_server, orjson.dumps({"data": [make_event()]}), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"code": 2, "message": "Authentication failed."}
    assert_pinterest_headers(response)
    assert sandbox_server.stats()["events_received"] == 0


@pytest.mark.parametrize("account", ["abc", "1234567890123456789", "12a"])
def test_malformed_ad_account_id_is_400(sandbox_server: SandboxClient, make_event: Any, account: str) -> None:
    response = sandbox_server.send([make_event()], account_id=account)
    assert response.status_code == 400
    assert response.json()["message"] == (
        f"Invalid request: ad_account_id must be digits only, at most 18 of them, got {account!r}")


def test_partial_failure_is_422_detailed_error_and_only_good_events_are_recorded(
        sandbox_server: SandboxClient, make_event: Any) -> None:
    now = int(time.time())
    good = make_event()
    old = make_event(event_time=now - 8 * 86400)
    unhashed = make_event(user_data={"em": ["jane@example.com"]})
    response = sandbox_server.send([good, old, unhashed])
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 953
    assert body["message"] == ("The action could not be processed properly due to some or all data provided "
                               "being invalid.")
    details = body["details"]
    assert (details["num_events_received"], details["num_events_processed"]) == (3, 1)
    assert [entry["status"] for entry in details["events"]] == ["processed", "failed", "failed"]
    assert details["events"][1]["error_message"].startswith(
        "Invalid event_timestamp parameter. Given timestamp is in the past. Current timestamp: ")
    assert details["events"][1]["error_message"].endswith(f"Given event_timestamp: {now - 8 * 86400}")
    assert "user_data.em[0]" in details["events"][2]["error_message"]
    assert "jane@example.com" not in details["events"][2]["error_message"]
    assert [item["event"]["event_id"] for item in sandbox_server.events()] == [good["event_id"]]
    stats = sandbox_server.stats()
    assert (stats["events_processed"], stats["events_failed"]) == (1, 2)


def test_event_time_in_the_future_fails(sandbox_server: SandboxClient, make_event: Any) -> None:
    response = sandbox_server.send([make_event(event_time=int(time.time()) + 3600)])
    assert response.status_code == 422
    assert "Given timestamp is in the future" in response.json()["details"]["events"][0]["error_message"]


def test_test_mode_validates_the_same_but_records_nothing(sandbox_server: SandboxClient, make_event: Any) -> None:
    events = [make_event(), make_event()]
    live = sandbox_server.send(events)
    sandbox_server.reset()
    test = sandbox_server.send(events, test=True)
    assert test.status_code == live.status_code == 200
    assert test.json() == live.json()
    assert sandbox_server.events() == []
    stats = sandbox_server.stats()
    assert (stats["test_requests"], stats["test_events"], stats["events_recorded"]) == (1, 2, 0)
    # nothing was stored for dedup either: the same events sent live are not duplicates
    sandbox_server.send(events)
    assert [item["duplicate"] for item in sandbox_server.events()] == [False, False]


def test_test_mode_processes_only_the_first_20_events(sandbox_server: SandboxClient, make_event: Any) -> None:
    response = sandbox_server.send([make_event() for _ in range(25)], test=True)
    details = response.json()["details"]
    assert response.status_code == 422
    assert (details["num_events_received"], details["num_events_processed"]) == (25, 20)
    assert [entry["status"] for entry in details["events"]] == ["processed"] * 20 + ["failed"] * 5
    assert "only the first 20 events" in details["events"][20]["error_message"]
    assert sandbox_server.events() == []


def test_duplicates_are_flagged_first_one_wins_and_not_reported_to_the_sender(
        sandbox_server: SandboxClient, make_event: Any) -> None:
    first = make_event(event_id="order-1")
    again = make_event(event_id="order-1", custom_data={"value": "1.00"})
    other_name = make_event(event_id="order-1", event_name="add_to_cart")
    assert sandbox_server.send([first]).status_code == 200
    response = sandbox_server.send([again, other_name])
    assert response.json()["events"] == [{"status": "processed", "error_message": "", "warning_message": ""}] * 2
    recorded = sandbox_server.events()
    assert [(item["event"]["event_name"], item["duplicate"]) for item in recorded] == [
        ("checkout", False), ("checkout", True), ("add_to_cart", False)]
    assert recorded[0]["event"]["custom_data"]["value"] == "72.39"
    assert sandbox_server.stats()["duplicates"] == 1
    # the key includes the ad account
    sandbox_server.send([first], account_id="42")
    assert sandbox_server.events(account_id="42")[0]["duplicate"] is False


def test_offline_events_are_never_deduplicated(sandbox_server: SandboxClient, make_event: Any) -> None:
    event = make_event(action_source="offline", event_id="store-7")
    sandbox_server.send([event])
    sandbox_server.send([event])
    assert [item["duplicate"] for item in sandbox_server.events()] == [False, False]


def test_events_api_filters(sandbox_server: SandboxClient, make_event: Any) -> None:
    sandbox_server.send([make_event(event_id="a"), make_event(event_id="b")])
    sandbox_server.send([make_event(event_id="c")], account_id="7")
    assert [item["seq"] for item in sandbox_server.events()] == [1, 2, 3]
    assert [item["event"]["event_id"] for item in sandbox_server.events(since=1)] == ["b", "c"]
    assert [item["event"]["event_id"] for item in sandbox_server.events(account_id="7")] == ["c"]
    assert [item["seq"] for item in sandbox_server.events(event_id="b")] == [2]
    limited = sandbox_server.http.get("/_sandbox/events", params={"limit": 1, "since": 1}).json()
    assert [item["seq"] for item in limited["events"]] == [2]
    assert limited["last_seq"] == 3
    assert sandbox_server.http.get("/_sandbox/events", params={"since": "x"}).status_code == 400


def test_reset_forgets_events_counters_and_dedup(sandbox_server: SandboxClient, make_event: Any) -> None:
    event = make_event()
    sandbox_server.send([event])
    sandbox_server.reset()
    assert sandbox_server.events() == []
    assert sandbox_server.stats()["requests_total"] == 0
    sandbox_server.send([event])
    assert sandbox_server.events()[0]["duplicate"] is False


def test_unknown_routes_and_methods_answer_json_errors(sandbox_server: SandboxClient) -> None:
    missing = sandbox_server.http.get("/v5/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "Resource not found."}
    assert "x-pinterest-rid" in missing.headers
    wrong = sandbox_server.http.get(sandbox_server.events_url)
    assert wrong.status_code == 405
    assert wrong.json()["message"] == "Method GET is not allowed here."
    assert sandbox_server.http.get("/_sandbox/health").json() == {"ok": True}


def test_settings_can_be_switched_until_reset(sandbox_server: SandboxClient, make_event: Any) -> None:
    current = sandbox_server.configure(partial_failure=200, accounts=["111"], tokens=["other"])
    assert (current["partial_failure"], current["accounts"], current["tokens"]) == (200, ["111"], 1)
    assert "other" not in sandbox_server.http.get("/_sandbox/settings").text
    assert sandbox_server.send([make_event()], account_id="111", token="other").status_code == 200
    assert sandbox_server.send([make_event()], account_id="222", token="other").status_code == 403
    old = make_event(event_time=int(time.time()) - 8 * 86400)
    assert sandbox_server.send([old], account_id="111", token="other").status_code == 200
    sandbox_server.reset()
    assert sandbox_server.send([old]).status_code == 422


@pytest.mark.parametrize(("changes", "message"), [
    ({"partial_failure": 500}, "PINSIGNAL_SANDBOX_PARTIAL_FAILURE must be 422 or 200, got 500."),
    ({"port": 1}, "'port' cannot be changed at run time"),
    ({"accounts": "111"}, "accounts must be a list of strings, got '111'."),
])
def test_bad_settings_changes_are_refused(sandbox_server: SandboxClient, changes: dict[str, Any],
                                          message: str) -> None:
    response = sandbox_server.http.post("/_sandbox/settings", json=changes)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"Invalid settings: {message}"), response.json()
    assert sandbox_server.http.get("/_sandbox/settings").json()["partial_failure"] == 422
