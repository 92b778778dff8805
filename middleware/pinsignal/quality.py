"""Match quality: which match keys recent delivered events carry, a plain score, the fixes that matter.

    report = await coverage(redis)              # from the trace's ``delivered`` records
    print(format_quality(report, eqs=None))
    eqs = await fetch_eqs(config)               # Pinterest's Event Quality Score, with PINTEREST_READ_TOKEN

Coverage is per Pinterest event name: the share of the delivered events still in the trace
(``PINSIGNAL_TRACE_MAXLEN`` records, the newest) that carry ``em``, ``ph``, ``external_id``,
``click_id``, IP with user agent (``ip_ua``), and ``event_id``. The score weighs them by how much
each helps Pinterest match a conversion to a person (email first, then the click id); it is our
own plain guide, not Pinterest's EQS, which :func:`fetch_eqs` reads when a read token is set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pinsignal.config import Config
from pinsignal.insight import keys_of

__all__ = ["KEYS", "EventQuality", "coverage", "fetch_eqs", "format_quality", "quality_report"]

KEYS = ("em", "ph", "external_id", "click_id", "ip_ua", "event_id")
"""The keys coverage is measured for, in the order they are shown."""

# How much each key adds to the 0-10 score (they sum to 10): email matches best, the click id ties
# the conversion to the ad, external id and IP/user agent help, phone less, event id is for dedup.
WEIGHTS = {"em": 3.5, "click_id": 2.0, "external_id": 1.5, "ip_ua": 1.5, "ph": 1.0, "event_id": 0.5}

FIXES = {
    "em": "call identify() with the email at sign-in and sign-up, or pass traits.email to track() at checkout",
    "ph": "pass traits.phone where the visitor gives one (checkout and sign-up forms)",
    "external_id": "pass user_id to identify() and track() for signed-in visitors",
    "click_id": "serve ad landing pages through the middleware so _epik is set, and keep ?epik= on ad links",
    "ip_ua": "send from the browser (c.js) or give context.ip and context.userAgent from server sources",
    "event_id": "map message_id (or the order id) to event_id in the pipeline's dedup step",
}

_NOUNS = {"checkout": "checkouts", "add_to_cart": "add-to-carts", "page_visit": "page visits", "lead": "leads",
          "signup": "sign-ups", "search": "searches", "view_category": "category views",
          "watch_video": "video views"}


@dataclass
class EventQuality:
    """Coverage of one Pinterest event name: ``share[key]`` in 0..1 of ``delivered`` events."""

    event_name: str
    delivered: int
    share: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    verdict: str = ""
    fixes: list[str] = field(default_factory=list)


def _verdict(score: float) -> str:
    if score >= 8:
        return "great"
    if score >= 6:
        return "good"
    if score >= 4:
        return "fair"
    return "needs work"


def quality_report(counts: dict[str, dict[str, int]]) -> list[EventQuality]:
    """From ``event_name -> {"delivered": n, key: carrying}`` to scored rows with their top fixes."""
    rows: list[EventQuality] = []
    for name, tally in sorted(counts.items(), key=lambda item: -item[1].get("delivered", 0)):
        delivered = tally.get("delivered", 0)
        if not delivered:
            continue
        share = {key: tally.get(key, 0) / delivered for key in KEYS}
        score = round(sum(WEIGHTS[key] * share[key] for key in KEYS), 1)
        noun = _NOUNS.get(name, f"{name} events")
        missing = sorted((key for key in KEYS if share[key] < 0.9), key=lambda key: -WEIGHTS[key] * (1 - share[key]))
        fixes = [f"{round((1 - share[key]) * 100)}% of {noun} lack {key}: {FIXES[key]}" for key in missing[:3]]
        rows.append(EventQuality(name, delivered, share, score, _verdict(score), fixes))
    return rows


def tally_records(records: Any) -> dict[str, dict[str, int]]:
    """Count ``delivered`` trace records per event name and key (for :func:`quality_report`)."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        if record.get("stage") != "delivered":
            continue
        tally = counts.setdefault(str(record.get("event_name") or "unknown"), {})
        tally["delivered"] = tally.get("delivered", 0) + 1
        carried = keys_of(int(record.get("keys") or 0))
        if record.get("event_id"):
            carried.append("event_id")
        for key in carried:
            tally[key] = tally.get(key, 0) + 1
    return counts


async def coverage(redis: Any) -> list[EventQuality]:
    """Quality rows from every ``delivered`` record still in the trace."""
    from pinsignal.trace import read_all

    return quality_report(tally_records([record async for record in read_all(redis)]))


async def fetch_eqs(config: Config, *, lookback: str = "14d", transport: Any = None) -> dict[str, Any]:
    """Pinterest's Event Quality Score (``GET /v5/ad_accounts/{id}/conversion_eqs``) with the read token.

    Returns ``{"scores": [...]}`` as Pinterest answers, or ``{"error": "..."}`` in one sentence.
    """
    import httpx

    if not config.read_token:
        return {"error": "PINTEREST_READ_TOKEN is not set; set an ads:read token to see Pinterest's score."}
    if not config.ad_account_id:
        return {"error": "PINTEREST_AD_ACCOUNT_ID is not set; the score is per ad account."}
    url = f"{config.api_url.rstrip('/')}/v5/ad_accounts/{config.ad_account_id}/conversion_eqs"
    try:
        async with httpx.AsyncClient(transport=transport, timeout=config.http_timeout) as client:
            response = await client.get(url, params={"lookback_period": lookback},
                                        headers={"Authorization": f"Bearer {config.read_token}"})
    except httpx.HTTPError as exc:
        return {"error": f"Pinterest could not be reached for the Event Quality Score ({type(exc).__name__})."}
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, list):
        message = body.get("message") if isinstance(body, dict) else None
        return {"error": f"Pinterest answered HTTP {response.status_code} for the Event Quality Score"
                         f"{f' ({message})' if message else ''}; check that PINTEREST_READ_TOKEN has ads:read."}
    return {"scores": body}


def to_dict(rows: list[EventQuality], eqs: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"events": [asdict(row) for row in rows]}
    if eqs is not None:
        data["pinterest_eqs"] = eqs
    return data


def format_quality(rows: list[EventQuality], eqs: dict[str, Any] | None) -> str:
    """The text of ``pinsignal quality``."""
    lines: list[str] = []
    if not rows:
        lines.append("no delivered events in the trace yet (or PINSIGNAL_TRACE_MAXLEN=0)")
    else:
        header = f"{'event_name':<18} {'delivered':>9}  " + "  ".join(f"{key:>11}" for key in KEYS) + "  score"
        lines.append(header)
        for row in rows:
            shares = "  ".join(f"{round(row.share[key] * 100):>10}%" for key in KEYS)
            lines.append(f"{row.event_name:<18} {row.delivered:>9}  {shares}  {row.score:>4}/10 {row.verdict}")
        fixes = [fix for row in rows for fix in row.fixes]
        lines += ["", "top fixes"] + ([f"  - {fix}" for fix in fixes[:6]] or ["  none: every key is on 90% or more"])
    lines.append("")
    if eqs is None:
        lines.append("Pinterest's Event Quality Score: set PINTEREST_READ_TOKEN (ads:read) to see it")
    elif "error" in eqs:
        lines.append(f"Pinterest's Event Quality Score: {eqs['error']}")
    else:
        lines.append("Pinterest's Event Quality Score")
        for score in eqs.get("scores", []):
            lines.append(f"  {score.get('source_platform', '?')} {score.get('ingestion_source', '?')} "
                         f"({score.get('lookback_period', '?')}): {score.get('overall_status', '?')}")
            components = score.get("quality_components") or {}
            for component, per_event in sorted(components.items()):
                if isinstance(per_event, dict):
                    shown = ", ".join(f"{name} {details.get('coverage', 0):g}%" for name, details in
                                      sorted(per_event.items()) if isinstance(details, dict))
                    lines.append(f"    {component}: {shown}")
    return "\n".join(lines)
