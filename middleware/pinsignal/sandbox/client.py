"""A small synchronous client for a running sandbox's test API (used by tests, benches and the demo).

    sandbox = SandboxClient("http://127.0.0.1:8410")
    sandbox.fault(status=503, count=2)              # the next two calls answer 503
    ...                                             # point PINTEREST_API_URL at sandbox.url
    sandbox.wait_for_events(10)                     # poll until 10 events are recorded
    assert sandbox.stats()["duplicates"] == 0
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from pinsignal.sandbox.settings import DEFAULT_TOKEN, DEMO_AD_ACCOUNT

__all__ = ["SandboxClient"]


class SandboxClient:
    """Talks to a sandbox's ``/_sandbox`` routes; ``url`` is what ``PINTEREST_API_URL`` should be."""

    def __init__(self, url: str, token: str = DEFAULT_TOKEN, account_id: str = DEMO_AD_ACCOUNT,
                 timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.account_id = account_id
        self.http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)
        """A kept-alive client with ``base_url`` set, for requests the helpers below do not cover."""

    @property
    def events_url(self) -> str:
        """The full events endpoint for :attr:`account_id`."""
        return f"{self.url}/v5/ad_accounts/{self.account_id}/events"

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` and ``Content-Type`` headers as Pinterest wants them."""
        return {"authorization": f"Bearer {self.token}", "content-type": "application/json"}

    def send(self, events: list[dict[str, Any]], *, test: bool = False, account_id: str | None = None,
             token: str | None = None) -> httpx.Response:
        """POST ``{"data": events}`` to the events endpoint, as pinsignal's worker would."""
        account = account_id or self.account_id
        headers = {**self.headers, "authorization": f"Bearer {token or self.token}"}
        return self.http.post(f"/v5/ad_accounts/{account}/events", json={"data": events}, headers=headers,
                               params={"test": "true"} if test else None)

    def events(self, *, since: int = 0, account_id: str | None = None, event_id: str | None = None
               ) -> list[dict[str, Any]]:
        """Recorded events, oldest first: ``{"seq", "ad_account_id", "received_at", "request_id",
        "duplicate", "event"}`` each."""
        params: dict[str, Any] = {"since": since}
        if account_id is not None:
            params["account"] = account_id
        if event_id is not None:
            params["event_id"] = event_id
        response = self.http.get("/_sandbox/events", params=params)
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def stats(self) -> dict[str, Any]:
        """Counters: ``requests`` by status, ``events_received``, ``events_recorded``, ``duplicates``, ..."""
        response = self.http.get("/_sandbox/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def fault(self, status: int | None = None, count: int | None = None, *, retry_after: float | None = None,
              ratelimit_reset: int | None = None, delay: float | None = None, delay_count: int | None = None,
              calls_per_minute: int | None = None) -> dict[str, Any]:
        """Inject a fault (see :mod:`pinsignal.sandbox.faults`); ``count`` defaults to 1 with a status."""
        spec = {"status": status, "count": count, "retry_after": retry_after, "ratelimit_reset": ratelimit_reset,
                "delay": delay, "delay_count": delay_count, "calls_per_minute": calls_per_minute}
        response = self.http.post("/_sandbox/faults", json={k: v for k, v in spec.items() if v is not None})
        response.raise_for_status()
        plan: dict[str, Any] = response.json()
        return plan

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Switch settings until the next reset, e.g. ``configure(partial_failure=200, accounts=["1"])``."""
        response = self.http.post("/_sandbox/settings", json=changes)
        response.raise_for_status()
        settings: dict[str, Any] = response.json()
        return settings

    def clear_faults(self) -> None:
        """Drop queued faults and delays, and restore the start-up calls-per-minute limit."""
        self.http.delete("/_sandbox/faults").raise_for_status()

    def reset(self) -> None:
        """Forget every event, dedup key, counter and fault."""
        self.http.post("/_sandbox/reset").raise_for_status()

    def wait_for_events(self, count: int, timeout: float = 30.0, interval: float = 0.05) -> list[dict[str, Any]]:
        """Poll until at least ``count`` events are recorded; returns them. Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            recorded = self.stats()["events_recorded"]
            if recorded >= count:
                return self.events()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sandbox recorded {recorded} events, not {count}, within {timeout} s")
            time.sleep(interval)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
