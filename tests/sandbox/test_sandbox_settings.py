"""Sandbox settings: options, environment variables, and how each changes the answers (in-process ASGI)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pinsignal.errors import ConfigError
from pinsignal.sandbox import SandboxSettings, create_app

pytestmark = pytest.mark.anyio


class InProcess:
    def __init__(self, settings: SandboxSettings) -> None:
        self.app = create_app(settings)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://sandbox")

    async def send(self, events: list[dict[str, Any]], *, account: str = "549755885175",
                   token: str = "sandbox-token") -> httpx.Response:
        return await self.http.post(f"/v5/ad_accounts/{account}/events", json={"data": events},
                                    headers={"authorization": f"Bearer {token}"})


@pytest.fixture
async def sandbox_factory() -> AsyncIterator[Any]:
    made: list[InProcess] = []

    def make(**options: Any) -> InProcess:
        made.append(InProcess(SandboxSettings(**options)))
        return made[-1]

    yield make
    for sandbox in made:
        await sandbox.http.aclose()


async def test_accounts_option_makes_other_accounts_forbidden(sandbox_factory: Any, make_event: Any) -> None:
    sandbox = sandbox_factory(accounts=("111", "222"))
    assert (await sandbox.send([make_event()], account="222")).status_code == 200
    refused = await sandbox.send([make_event()], account="333")
    assert refused.status_code == 403
    assert refused.json() == {"code": 29, "message": "You are not permitted to access that resource."}
    assert "x-pinterest-rid" in refused.headers


async def test_several_tokens(sandbox_factory: Any, make_event: Any) -> None:
    sandbox = sandbox_factory(tokens=("one", "two"))
    assert (await sandbox.send([make_event()], token="two")).status_code == 200
    assert (await sandbox.send([make_event()], token="sandbox-token")).status_code == 401


async def test_partial_failure_200_keeps_the_same_body_without_the_envelope(sandbox_factory: Any,
                                                                            make_event: Any) -> None:
    sandbox = sandbox_factory(partial_failure=200)
    response = await sandbox.send([make_event(), make_event(event_time=int(time.time()) - 30 * 86400)])
    assert response.status_code == 200
    body = response.json()
    assert (body["num_events_received"], body["num_events_processed"]) == (2, 1)
    assert body["events"][1]["status"] == "failed"


async def test_unknown_event_names_can_fail_in_pinterest_words(sandbox_factory: Any, make_event: Any) -> None:
    sandbox = sandbox_factory(unknown_event_names="fail")
    response = await sandbox.send([make_event(event_name="subscription")])
    assert response.status_code == 422
    assert response.json()["details"]["events"][0]["error_message"] == (
        "Invalid event_name: subscription. Use a supported conversion event_name (for example subscribe, checkout).")


async def test_max_age_days_moves_the_window(sandbox_factory: Any, make_event: Any) -> None:
    ten_days_old = make_event(event_time=int(time.time()) - 10 * 86400)
    assert (await sandbox_factory(max_age_days=30).send([ten_days_old])).status_code == 200
    assert (await sandbox_factory(max_age_days=7).send([ten_days_old])).status_code == 422
    one_day_old = make_event(event_time=int(time.time()) - 86400)
    assert (await sandbox_factory(max_age_days=0.5).send([one_day_old])).status_code == 422


async def test_omit_empty_messages(sandbox_factory: Any, make_event: Any) -> None:
    response = await sandbox_factory(omit_empty_messages=True).send([make_event()])
    assert response.json()["events"] == [{"status": "processed"}]


async def test_recorded_events_are_bounded_but_counted(sandbox_factory: Any, make_event: Any) -> None:
    sandbox = sandbox_factory(max_recorded=3)
    await sandbox.send([make_event(event_id=f"e{i}") for i in range(5)])
    listed = (await sandbox.http.get("/_sandbox/events")).json()
    assert [item["event"]["event_id"] for item in listed["events"]] == ["e2", "e3", "e4"]
    assert listed["evicted"] == 2
    since = (await sandbox.http.get("/_sandbox/events", params={"since": 3})).json()
    assert [item["seq"] for item in since["events"]] == [4, 5]
    stats = (await sandbox.http.get("/_sandbox/stats")).json()
    assert (stats["events_recorded"], stats["events_stored"]) == (5, 3)


async def test_dedup_store_is_bounded_oldest_keys_go_first(sandbox_factory: Any, make_event: Any) -> None:
    sandbox = sandbox_factory(max_dedup_keys=2)
    await sandbox.send([make_event(event_id=f"e{i}") for i in range(3)])   # e0 is evicted
    await sandbox.send([make_event(event_id="e2"), make_event(event_id="e0")])
    flags = [item["duplicate"] for item in (await sandbox.http.get("/_sandbox/events")).json()["events"]]
    assert flags == [False, False, False, True, False]


async def test_dedup_expires_after_the_window(make_event: Any) -> None:
    app = create_app(SandboxSettings(dedup_hours=48))
    state = app.state.sandbox
    now = time.time()
    event = make_event(event_id="x")
    for offset in (0, 47 * 3600, 49 * 3600, 50 * 3600):
        state.record_batch("1", now + offset, "rid", [event])
    assert [record.duplicate for record in state.records] == [False, True, False, True]
    assert len(state.dedup) == 1


async def test_oversized_body_is_refused(sandbox_factory: Any, make_event: Any) -> None:
    sandbox = sandbox_factory(max_body_bytes=1000)
    response = await sandbox.send([make_event() for _ in range(5)])
    assert response.status_code == 400
    assert "larger than the sandbox limit of 1000 bytes" in response.json()["message"]


def test_settings_from_environment() -> None:
    settings = SandboxSettings.from_env({
        "PINSIGNAL_SANDBOX_PORT": "9000",
        "PINSIGNAL_SANDBOX_TOKENS": "a, b",
        "PINSIGNAL_SANDBOX_ACCOUNTS": "1,2",
        "PINSIGNAL_SANDBOX_PARTIAL_FAILURE": "200",
        "PINSIGNAL_SANDBOX_MAX_AGE_DAYS": "3.5",
        "PINSIGNAL_SANDBOX_OMIT_EMPTY_MESSAGES": "yes",
    }, port=9100)
    assert settings.port == 9100  # keywords (command-line options) win
    assert settings.tokens == ("a", "b")
    assert settings.accounts == ("1", "2")
    assert settings.partial_failure == 200
    assert settings.max_age_days == 3.5
    assert settings.omit_empty_messages is True


@pytest.mark.parametrize(("environ", "message"), [
    ({"PINSIGNAL_SANDBOX_PORT": "eighty"}, "PINSIGNAL_SANDBOX_PORT must be a whole number, got 'eighty'."),
    ({"PINSIGNAL_SANDBOX_ACCOUNTS": "12x"}, "PINSIGNAL_SANDBOX_ACCOUNTS entries must be numeric ad account ids"),
    ({"PINSIGNAL_SANDBOX_PARTIAL_FAILURE": "500"}, "PINSIGNAL_SANDBOX_PARTIAL_FAILURE must be 422 or 200, got 500."),
    ({"PINSIGNAL_SANDBOX_TOKENS": ","}, "PINSIGNAL_SANDBOX_TOKENS must list at least one token"),
    ({"PINSIGNAL_SANDBOX_CALLS_PER_MINUTE": "0"}, "PINSIGNAL_SANDBOX_CALLS_PER_MINUTE must be a positive whole"),
    ({"PINSIGNAL_SANDBOX_OMIT_EMPTY_MESSAGES": "maybe"}, "PINSIGNAL_SANDBOX_OMIT_EMPTY_MESSAGES must be true or"),
])
def test_bad_settings_fail_with_one_sentence(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxSettings.from_env(environ)
    assert str(caught.value).startswith(message), str(caught.value)


def test_rate_window_is_per_account_and_restarts_after_a_minute() -> None:
    state = create_app(SandboxSettings(calls_per_minute=2)).state.sandbox
    start = 1_000_000.0
    assert state.take_call("1", start) == (True, 1, 60)
    assert state.take_call("1", start + 10.2) == (True, 0, 50)
    assert state.take_call("1", start + 20) == (False, 0, 40)
    assert state.peek_calls("1", start + 30) == (0, 30)
    assert state.take_call("2", start + 20) == (True, 1, 60)
    assert state.take_call("1", start + 60) == (True, 1, 60)
