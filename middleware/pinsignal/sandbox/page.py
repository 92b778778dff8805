"""The sandbox's root page: what it received, newest first, with each event's match keys.

Everything shown comes from request bodies, so every value goes through :func:`html.escape`,
and the page is served with a Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any

import orjson

from pinsignal.sandbox.state import Record

__all__ = ["match_keys", "render_page"]

PAGE_SIZE = 100
_HASHED_KEYS = ("em", "ph", "external_id", "hashed_maids")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.3rem;margin:0 0 .3rem}
.counts span{margin-right:1.2rem}
table{border-collapse:collapse;width:100%;margin-top:1rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}
code{font-size:12px}
.dup{color:#a40}
.none{color:#999}
"""


def match_keys(event: dict[str, Any]) -> list[str]:
    """Which match keys an event carried, hashes shortened (``em 1a2b3c4d…``, ``IP+UA``)."""
    user_data = event.get("user_data")
    if not isinstance(user_data, dict):
        return []
    keys: list[str] = []
    for name in _HASHED_KEYS:
        values = user_data.get(name)
        if isinstance(values, list) and values:
            first = str(values[0])
            more = f" +{len(values) - 1}" if len(values) > 1 else ""
            keys.append(f"{name} {first[:8]}…{more}")
    click_id = user_data.get("click_id")
    if isinstance(click_id, str) and click_id:
        keys.append(f"click_id {click_id[:10]}…")
    if user_data.get("client_ip_address") and user_data.get("client_user_agent"):
        keys.append("IP+UA")
    return keys


def _visitor(event: dict[str, Any], esc: Any) -> str:
    """Who the event says the visitor is: click id, IP address and user agent (shortened), and LDP."""
    user = event.get("user_data")
    user = user if isinstance(user, dict) else {}
    parts = []
    for name, label, width in (("click_id", "click id", 24), ("client_ip_address", "IP", 45),
                               ("client_user_agent", "UA", 48)):
        value = user.get(name)
        if isinstance(value, str):
            short = value if len(value) <= width else value[:width - 1] + "…"
            parts.append(f'{label} <code title="{esc(value)}">{esc(short)}</code>')
    custom = event.get("custom_data")
    if isinstance(custom, dict) and custom.get("opt_out_type"):
        parts.append(f"<b>{esc(str(custom['opt_out_type']))}</b>")
    return "<br>".join(parts) or "<span class=none>none</span>"


def render_page(records: Iterable[Record], stats: dict[str, Any], refresh_seconds: int = 2) -> str:
    """The HTML page for ``GET /``: counters, then the newest :data:`PAGE_SIZE` events."""
    esc = html.escape
    rows: list[str] = []
    for record in records:
        event = orjson.loads(record.event)
        keys = match_keys(event)
        event_time = event.get("event_time")
        shown_time = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event_time))
                      if isinstance(event_time, int) and 0 <= event_time < 10**11 else str(event_time))
        flag = ' <span class="dup">duplicate</span>' if record.duplicate else ""
        custom = event.get("custom_data")
        value = ""
        if isinstance(custom, dict) and custom.get("value") is not None:
            value = f"{custom.get('value')} {custom.get('currency') or ''}".strip()
        rows.append(
            "<tr>"
            f"<td>{esc(time.strftime('%H:%M:%S', time.gmtime(record.received_at)))}</td>"
            f"<td>{esc(record.ad_account_id)}</td>"
            f"<td>{esc(str(event.get('event_name')))}{flag}</td>"
            f"<td><code>{esc(str(event.get('event_id')))}</code></td>"
            f"<td>{esc(shown_time)}</td>"
            f"<td>{esc(str(event.get('action_source')))}</td>"
            f"<td>{esc(value)}</td>"
            f"<td>{esc(', '.join(keys)) if keys else '<span class=none>none</span>'}</td>"
            f"<td>{_visitor(event, esc)}</td>"
            f"<td><code>{esc(record.request_id)}</code></td>"
            "</tr>"
        )
    counts = (
        f"<span>requests: {stats['requests_total']}</span>"
        f"<span>events received: {stats['events_received']}</span>"
        f"<span>recorded: {stats['events_recorded']}</span>"
        f"<span>failed: {stats['events_failed']}</span>"
        f"<span>duplicates: {stats['duplicates']}</span>"
        f"<span>test events (not recorded): {stats['test_events']}</span>"
    )
    body = "\n".join(rows) if rows else '<tr><td colspan="10" class="none">Nothing received yet.</td></tr>'
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"refresh\" content=\"{int(refresh_seconds)}\">"
        "<title>pinsignal sandbox</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>pinsignal sandbox</h1>"
        "<p>A local stand-in for <code>POST /v5/ad_accounts/{ad_account_id}/events</code>. "
        f"Newest first, last {PAGE_SIZE} shown; JSON at <code>/_sandbox/events</code>.</p>"
        f"<p class=\"counts\">{counts}</p>"
        "<table><thead><tr><th>received (UTC)</th><th>ad account</th><th>event</th><th>event_id</th>"
        "<th>event_time (UTC)</th><th>source</th><th>value</th><th>match keys</th>"
        "<th>click id, IP, user agent</th><th>request id</th></tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>\n"
    )
