"""``--server-pageviews``: count HTML page views on the server, with no script at all.

A request is a page view when it is a navigation (``GET``, and ``Sec-Fetch-Dest: document``, or,
from browsers that do not send fetch metadata, an ``Accept`` that names ``text/html``), not a
prefetch, not from a known crawler, and the upstream answers 2xx with an HTML page. The event is a
``page`` envelope handed to the same intake as the collector's and ``track()``'s, after the page
has been sent, so the visitor never waits for it.

Counted once with the script: the page view id is written into the injected tag as ``data-pv``;
``c.js`` uses it as the ``message_id`` of its automatic first ``page`` call, and both events
become Pinterest events with the same ``event_id``, which Pinterest (and the queue) deduplicate.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.types import Scope

from pinsignal.bots import BotFilter

__all__ = ["Handoff", "PageviewPolicy", "is_navigation", "page_event"]

logger = logging.getLogger("pinsignal.proxy")

# Receives the ASGI scope of the page request and the raw ``page`` event; the middleware's intake
# fills IP, user agent and cookies from the scope, checks consent and runs the pipelines.
Handoff = Callable[[Scope, dict[str, Any]], Awaitable[None]]


class PageviewPolicy:
    """Decides, from the request alone, whether a successful HTML answer will be a page view."""

    def __init__(self, bots: BotFilter | None = None) -> None:
        self._bots = bots or BotFilter()

    def pageview_id(self, scope: Scope) -> str | None:
        """A fresh page view id when the request is a top-level navigation by a person, else ``None``."""
        if not is_navigation(scope, frames=False):
            return None
        agent: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value
            elif name in (b"sec-purpose", b"purpose", b"x-moz") and b"prefetch" in value.lower():
                return None  # a speculative load is not a view; the real navigation may follow
        if agent is None or self._bots.is_bot(agent.decode("latin-1")):
            return None
        return uuid.uuid4().hex


def is_navigation(scope: Scope, *, frames: bool = True) -> bool:
    """Whether the request loads a page into a window (``frames``: or into an iframe).

    A ``GET`` with ``Sec-Fetch-Dest: document`` (or ``iframe``); from browsers that send no fetch
    metadata, a ``GET`` whose ``Accept`` names ``text/html``.
    """
    if scope["method"] != "GET":
        return False
    accept = b""
    for name, value in scope["headers"]:
        if name == b"sec-fetch-dest":
            dest = value.lower()
            return dest == b"document" or (frames and dest == b"iframe")
        if name == b"accept":
            accept = value
    return b"text/html" in accept.lower()


def page_url(scope: Scope, headers: Sequence[tuple[bytes, bytes]], scheme: str) -> str:
    """The URL the visitor asked for, as the browser shows it."""
    host = next((value for name, value in headers if name == b"host"), b"").decode("latin-1")
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    return f"{scheme}://{host}{target}" if host else target


def page_event(scope: Scope, pageview_id: str, *, scheme: str) -> dict[str, Any]:
    """The raw ``page`` event for one server-side page view (a Segment-shaped ``page`` call)."""
    headers = scope["headers"]
    page: dict[str, Any] = {"url": page_url(scope, headers, scheme)}
    referrer = next((value for name, value in headers if name == b"referer"), None)
    if referrer:
        page["referrer"] = referrer.decode("latin-1")
    now = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"type": "page", "message_id": pageview_id, "timestamp": now, "properties": {},
            "context": {"page": page}}
