"""``GET /v5/ad_accounts/{id}/conversion_eqs``: the sandbox's Event Quality Score, from what it recorded.

Pinterest computes its score from matching rates it does not publish; the sandbox answers in the
same shape (SPEC ``EventQualityScore``: ``overall_status``, ``quality_components`` per event name
with ``coverage`` in percent, ``ingestion_source``, ``source_platform``, ``lookback_period``) from
the coverage of each component among the events it recorded in the lookback window. Its
``overall_status`` is its own rule, stated here so that tests can rely on it: the mean coverage of
``hashed_email``, ``click_id_epik``, ``advertiser_external_id``, ``ip_address``, ``user_agent`` and
``external_event_id`` over every event, ``GOOD`` from 70%, ``FAIR`` from 40%, else
``NEEDS_IMPROVEMENT``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pinsignal.sandbox.state import Record

__all__ = ["LOOKBACKS", "event_quality"]

LOOKBACKS = {"1d": 86400.0, "14d": 14 * 86400.0}

_Check = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], bool]
COMPONENTS: dict[str, _Check] = {
    "hashed_email": lambda e, u, c: bool(u.get("em")),
    "hashed_maid": lambda e, u, c: bool(u.get("hashed_maids")),
    "advertiser_external_id": lambda e, u, c: bool(u.get("external_id")),
    "click_id_epik": lambda e, u, c: bool(u.get("click_id")),
    "ip_address": lambda e, u, c: bool(u.get("client_ip_address")),
    "user_agent": lambda e, u, c: bool(u.get("client_user_agent")),
    "external_event_id": lambda e, u, c: bool(e.get("event_id")),
    "order_id": lambda e, u, c: bool(c.get("order_id")),
    "order_value": lambda e, u, c: bool(c.get("value")),
    "product_id": lambda e, u, c: bool(c.get("content_ids") or c.get("contents")),
    "source_url": lambda e, u, c: bool(e.get("event_source_url")),
}
_OVERALL = ("hashed_email", "click_id_epik", "advertiser_external_id", "ip_address", "user_agent",
            "external_event_id")


def event_quality(records: Iterable[Record], account: str, *, now: float, lookback: str) -> list[dict[str, Any]]:
    """The answer's body: one score for web events sent through the API (empty counts: coverage 0)."""
    since = now - LOOKBACKS[lookback]
    totals: dict[str, int] = {}
    hits: dict[str, dict[str, int]] = {name: {} for name in COMPONENTS}
    for record in records:
        if record.ad_account_id != account or record.received_at < since or record.duplicate:
            continue
        event = orjson.loads(record.event)
        name = str(event.get("event_name"))
        user = event.get("user_data") if isinstance(event.get("user_data"), dict) else {}
        custom = event.get("custom_data") if isinstance(event.get("custom_data"), dict) else {}
        totals[name] = totals.get(name, 0) + 1
        for component, check in COMPONENTS.items():
            if check(event, user, custom):
                hits[component][name] = hits[component].get(name, 0) + 1
    components: dict[str, dict[str, dict[str, Any]]] = {}
    for component in COMPONENTS:
        per_event: dict[str, dict[str, Any]] = {}
        for name, total in sorted(totals.items()):
            coverage = round(100.0 * hits[component].get(name, 0) / total, 1)
            details: dict[str, Any] = {"coverage": coverage, "issues": []}
            if coverage < 50 and component in _OVERALL:
                details["issues"].append({"id": f"{component}_low", "name": f"Low {component} coverage",
                                          "reason": f"{coverage:g}% of {name} events carry it."})
            per_event[name] = details
        components[component] = per_event
    events = sum(totals.values())
    mean = (sum(hits[c].get(n, 0) for c in _OVERALL for n in totals) / (events * len(_OVERALL)) * 100) if events else 0
    status = "GOOD" if mean >= 70 else "FAIR" if mean >= 40 else "NEEDS_IMPROVEMENT"
    return [{"ingestion_source": "CONVERSIONS_API", "source_platform": "WEB", "lookback_period": lookback,
             "overall_status": status, "quality_components": components}]
