"""The sandbox checks Limited Data Processing where the v5 schema puts it, and its page shows who the visitor is."""

from __future__ import annotations

import time
from typing import Any

from pinsignal.pipeline.normalise import sha256_hex

UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0"


def _event(event_id: str, **extra: Any) -> dict[str, Any]:
    user = {"em": [sha256_hex("a@example.com")], "client_ip_address": "203.0.113.9", "client_user_agent": UA,
            "click_id": "dj0yJnU9c2FuZGJveA"}
    event: dict[str, Any] = {"event_name": "checkout", "action_source": "web", "event_time": int(time.time()) - 60,
                             "event_id": event_id, "user_data": user}
    for key, value in extra.items():
        event[key] = {**event.get(key, {}), **value}
    return event


def test_opt_out_type_is_checked(sandbox_server: Any) -> None:
    answer = sandbox_server.send([
        _event("ok", custom_data={"opt_out_type": "LDP"}),
        _event("misplaced", user_data={"opt_out_type": "LDP"}),
        _event("unknown", custom_data={"opt_out_type": "LDP,CCPA"}),
        _event("none"),
    ])
    results = answer.json()["details"]["events"] if answer.status_code == 422 else answer.json()["events"]
    ok, misplaced, unknown, none = results
    assert ok["status"] == "processed" and "opt_out_type" not in ok["warning_message"]
    assert misplaced["status"] == "failed" and "custom_data.opt_out_type" in misplaced["error_message"]
    assert unknown["status"] == "processed" and "'CCPA' is not processed" in unknown["warning_message"]
    assert none["status"] == "processed"


def test_the_page_shows_the_click_id_ip_user_agent_and_ldp(sandbox_server: Any) -> None:
    assert sandbox_server.send([_event("shown", custom_data={"opt_out_type": "LDP"})]).status_code == 200
    page = sandbox_server.http.get("/").text
    assert "dj0yJnU9c2FuZGJveA" in page and "203.0.113.9" in page and "Chrome/124.0" in page
    assert "<b>LDP</b>" in page
