"""The HTTP client that posts batches to ``POST /v5/ad_accounts/{id}/events``.

One :class:`PinterestClient` per worker process: one ``httpx.AsyncClient`` with timeouts, kept-alive
connections and no cookie jar. Every answer (or transport failure) becomes one :class:`SendResult`
whose ``action`` tells the worker what to do, by the worker's :class:`~pinsignal.retry.RetryPolicy`::

    client = PinterestClient(config)
    result = await client.send(account_id, body)      # body: the JSON request bytes
    result.action         # "ok" | "split" | "pause" | "retry"

The access token only ever travels in the ``Authorization`` header; it is never logged, and
nothing here formats a request's headers into a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import orjson

from pinsignal import __version__
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.retry import Action, RetryPolicy

__all__ = ["EventStatus", "PinterestClient", "SendResult", "parse_response"]

logger = logging.getLogger("pinsignal.pinterest.client")

_DEFAULT_POLICY = RetryPolicy()
_PAUSE_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


@dataclass(frozen=True)
class EventStatus:
    """Pinterest's verdict on one event of a batch, in request order."""

    processed: bool
    error_message: str = ""
    warning_message: str = ""


@dataclass
class SendResult:
    """One attempt's result; ``action`` is what the worker does next (see :data:`~pinsignal.retry.Action`).

    - ``ok``: Pinterest answered per event (200, or 422 with ``details``); ``events`` holds the
      statuses (empty when the body did not list them: then every event counts as processed).
    - ``split``: the whole batch was refused (400 and other 4xx): split it to isolate the bad events.
    - ``pause``: 401/403/404, the token or account is wrong; stop sending to this account.
    - ``retry``: 429, 5xx, timeout or connection error; ``delay`` is the wait the server asked for.
    """

    action: Action
    status: int | None
    reason: str
    message: str = ""
    events: list[EventStatus] = field(default_factory=list)
    delay: float | None = None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _statuses(body: Any) -> list[EventStatus] | None:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return None
    statuses = []
    for item in body["events"]:
        item = item if isinstance(item, dict) else {}
        statuses.append(EventStatus(
            processed=item.get("status", "processed") != "failed",
            error_message=_text(item.get("error_message")),
            warning_message=_text(item.get("warning_message")),
        ))
    return statuses


def _warned(body: dict[str, Any]) -> bool:
    """Whether any event's status carries a ``warning_message`` (a scan, no objects built)."""
    events = body.get("events")
    return isinstance(events, list) and any(type(item) is dict and item.get("warning_message") for item in events)


def _message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def parse_response(response: httpx.Response, batch_size: int, policy: RetryPolicy = _DEFAULT_POLICY) -> SendResult:
    """Turn Pinterest's answer into a :class:`SendResult`; unknown keys are ignored."""
    status = response.status_code
    try:
        body: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if status == 200:
        if isinstance(body, dict) and body.get("num_events_processed") == batch_size and not _warned(body):
            return SendResult("ok", status, "ok")  # all processed, nothing to warn about: no status to read
        statuses = _statuses(body) or []
        if statuses and len(statuses) != batch_size:
            logger.warning("Pinterest listed %d statuses for a batch of %d events", len(statuses), batch_size)
            statuses = []
        return SendResult("ok", status, "ok", events=statuses)
    if status == 422:
        details = body.get("details") if isinstance(body, dict) else None
        listed = _statuses(details)
        if listed and len(listed) == batch_size:
            return SendResult("ok", status, "rejected", _message(body, response), events=listed)
    action = policy.action(status)
    if action == "pause":
        return SendResult("pause", status, _PAUSE_REASONS.get(status, "paused"), _message(body, response))
    if action == "retry":
        reason = "rate_limited" if status == 429 else "server_error"
        delay = policy.asked_delay(response.headers, rate_limited=status == 429)
        return SendResult("retry", status, reason, _message(body, response), delay=delay)
    return SendResult("split", status, "bad_request", _message(body, response))


class PinterestClient:
    """Posts batches to Pinterest; one per worker, closed by the worker's shut-down hook."""

    def __init__(self, config: Config, *, transport: httpx.AsyncBaseTransport | None = None,
                 max_connections: int = 16, policy: RetryPolicy = _DEFAULT_POLICY) -> None:
        if not config.access_token:
            raise ConfigError("PINTEREST_ACCESS_TOKEN is not set; it is required to deliver events.")
        self.policy = policy
        self.base_url = config.api_url.rstrip("/")
        self.params = {"test": "true"} if config.test_mode else {}
        # A jar whose policy accepts no domain: the API has no business setting cookies on us.
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(config.http_timeout, connect=min(config.http_timeout, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=60.0),
            cookies=no_cookies,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {config.access_token}",
                "Content-Type": "application/json",
                "User-Agent": f"pinsignal/{__version__}",
            },
        )

    def events_url(self, account: str) -> str:
        return f"{self.base_url}/v5/ad_accounts/{account}/events"

    async def send(self, account: str, body: bytes, batch_size: int) -> SendResult:
        """POST one batch; never raises for HTTP or network trouble (timeouts and connection errors retry)."""
        try:
            response = await self.http.post(self.events_url(account), content=body, params=self.params)
        except httpx.TimeoutException as exc:
            return SendResult("retry", None, "timeout", f"{type(exc).__name__} after {self.http.timeout.read} s")
        except httpx.TransportError as exc:
            return SendResult("retry", None, "connection_error", f"{type(exc).__name__}: {exc}")
        return parse_response(response, batch_size, self.policy)

    async def aclose(self) -> None:
        await self.http.aclose()
