"""The incoming event envelope (DESIGN section 3): one canonical shape for every event.

    envelope = parse_envelope(raw, received_at=time.time())   # raises EnvelopeError(reasons)

``raw`` is untrusted (a dict from a browser, Segment's analytics.js or server code). The result
is a new dict in canonical form::

    {"type": "track", "event": "order_completed", "message_id": "...", "anonymous_id": "...",
     "user_id": "u-42", "timestamp": "2026-11-29T12:00:00.000Z", "received_at": "...",
     "properties": {...}, "traits": {...}, "context": {...}}

* Top-level keys are snake_case; Segment's camelCase names (``messageId``, ``userId``,
  ``anonymousId``, ``sentAt``, ``originalTimestamp``) are converted. ``context`` keeps Segment's
  names (``userAgent``, ``page.url``). Other top-level keys Segment sends (``integrations``,
  ``writeKey``, ``_metadata``...) are dropped; a near-miss of a known key (``propeties``) is an error.
* ``type`` is ``track``, ``page`` or ``identify``. A track ``event`` name is turned into snake_case
  (``Order Completed`` -> ``order_completed``) so Segment's spec names and ours meet; page calls
  keep Segment's ``name`` and ``category``.
* ``traits`` falls back to ``context.traits`` (where analytics.js puts them on track calls).
* ``timestamp`` (ISO-8601 or epoch seconds/milliseconds) is corrected for client clock skew with
  ``sent_at``: ``timestamp - sent_at + received_at``; without a timestamp it is ``received_at``.
  Output timestamps are ISO-8601 UTC with milliseconds.
* Without ``message_id`` a deterministic one (``ps-`` + 32 hex) is derived from the canonical
  content, so a resend of the same payload deduplicates downstream.
* Untrusted input is bounded (:data:`MAX_DEPTH`, :data:`MAX_STRING`, :data:`MAX_KEYS`,
  :data:`MAX_ITEMS`, :data:`MAX_ID`), and the Segment e-commerce fields are type-checked, with
  one precise reason per problem (``properties.revenue: expected a number, got 'abc'``).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from pinsignal.errors import EnvelopeError

__all__ = [
    "EVENT_TYPES",
    "MAX_DEPTH",
    "MAX_ID",
    "MAX_ITEMS",
    "MAX_KEYS",
    "MAX_REASONS",
    "MAX_STRING",
    "EnvelopeError",
    "parse_envelope",
    "parse_time",
    "snake_event_name",
]

EVENT_TYPES = frozenset({"track", "page", "identify"})
MAX_DEPTH = 8
"""Deepest nesting accepted; the envelope itself is level 1, ``properties.products[0]`` level 4."""
MAX_STRING = 8192
"""Longest string value, in characters."""
MAX_KEYS = 200
"""Most keys in any one object."""
MAX_ITEMS = 500
"""Most items in any one array (``properties.products`` included)."""
MAX_ID = 200
"""Longest ``message_id``, ``user_id``, ``anonymous_id``, event name, page name or category."""
MAX_REASONS = 20
"""Reasons reported before the rest are summarised as a count."""

_TOP_LEVEL = {
    "type": "type", "event": "event", "name": "name", "category": "category",
    "message_id": "message_id", "messageId": "message_id",
    "anonymous_id": "anonymous_id", "anonymousId": "anonymous_id",
    "user_id": "user_id", "userId": "user_id",
    "timestamp": "timestamp", "original_timestamp": "original_timestamp", "originalTimestamp": "original_timestamp",
    "sent_at": "sent_at", "sentAt": "sent_at",
    "properties": "properties", "traits": "traits", "context": "context",
}
_CANONICAL = frozenset(key for key, name in _TOP_LEVEL.items() if key == name)
# Sent by Segment libraries; meaningless here, so dropped without a word.
_IGNORED = frozenset({
    "integrations", "writeKey", "write_key", "_metadata", "version", "channel", "receivedAt", "received_at",
    "options", "projectId", "groupId", "previousId", "batch", "requestId",
})
_KNOWN_NAMES = sorted(set(_TOP_LEVEL) | _IGNORED)

# Segment e-commerce spec fields with a type (https://segment.com/docs/connections/spec/ecommerce/v2/).
_PROPERTY_KINDS = {
    **dict.fromkeys(("revenue", "value", "total", "subtotal", "price", "tax", "shipping", "discount"), "a number"),
    **dict.fromkeys(("quantity", "position"), "an integer"),
}
_NUMERIC_TEXT = re.compile(r"\s*-?(\d+(\.\d*)?|\.\d+)\s*")
_INTEGER_TEXT = re.compile(r"\s*-?\d+\s*")
_SNAKE = re.compile(r"[a-z0-9_]+")
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_EPOCH_MS = 10**11
_YEAR_MIN, _YEAR_MAX = 1970, 9000


def parse_envelope(raw: object, *, received_at: float, context: dict[str, Any] | None = None,
                   decoded: bool = False) -> dict[str, Any]:
    """Check untrusted ``raw`` and return the canonical envelope; raise :class:`EnvelopeError`.

    ``context`` replaces the event's own (the collector passes its copy with the server's fields),
    so the event is not copied once more for it. ``decoded=True`` says that ``raw`` and ``context``
    hold only what JSON decoding gives (string keys; strings, finite numbers, booleans, null,
    lists and dicts): the size bounds are then tested without the type tests JSON makes moot.
    The limits and the reasons are the same either way.

    >>> parse_envelope({"type": "track", "event": "Order Completed", "messageId": "m1",
    ...                 "timestamp": "2026-11-29T12:00:00Z"}, received_at=0)["event"]
    'order_completed'
    """
    if type(raw) is not dict:
        raise EnvelopeError([f"the event must be a JSON object, got {_show(raw)}"])
    reasons: list[str] = []
    out: dict[str, Any]
    if raw.keys() <= _CANONICAL:
        # Every key is already its canonical name (what the browser script sends): the loop below
        # would copy each one as it is, in the same order.
        out = dict(raw)
    else:
        out = {}
        for key, value in raw.items():
            name = _TOP_LEVEL.get(key) if type(key) is str else None
            if name is None:
                if key not in _IGNORED:
                    _unknown_key(key, reasons)
            elif name not in out or key == name:
                out[name] = value
    if context is not None:
        out["context"] = context
    kind = out.get("type")
    if kind is None:
        reasons.append("type: required; use 'track', 'page' or 'identify'")
    elif type(kind) is not str or kind not in EVENT_TYPES:
        reasons.append(f"type: {_show(kind)} is not supported; use 'track', 'page' or 'identify'")
    _check_names(out, kind, reasons)
    for key in ("message_id", "anonymous_id", "user_id"):
        value = out.get(key)
        if value is None:
            if key in out:
                del out[key]
        elif type(value) is not str or len(value) > MAX_ID:
            _check_id(out, key, reasons)
    for key in ("properties", "traits", "context"):
        value = out.get(key)
        if value is None:
            out[key] = {}
        elif type(value) is not dict:
            reasons.append(f"{key}: expected an object, got {_show(value)}")
        elif decoded and key != "context" and _short_json(value, 2):
            continue  # the context carries the user agent and URLs: rarely short, so walked at once
        elif not (_fits_decoded(value, 2) if decoded else _fits(value, 2)):
            _walk(value, key, 2, reasons)
    context = out.get("context")
    if not out["traits"] and type(context) is dict and type(context.get("traits")) is dict:
        out["traits"] = context["traits"]
    if type(out["properties"]) is dict:
        _check_properties(out["properties"], reasons)
    _check_times(out, received_at, reasons)
    if reasons:
        if len(reasons) > MAX_REASONS:
            reasons[MAX_REASONS:] = [f"... and {len(reasons) - MAX_REASONS} more problems"]
        raise EnvelopeError(reasons)
    if not out.get("message_id"):
        out["message_id"] = _content_id(out)
    return out


def snake_event_name(name: str) -> str:
    """``'Order Completed'`` / ``'orderCompleted'`` / ``'order-completed'`` -> ``'order_completed'``."""
    if _SNAKE.fullmatch(name):
        return name
    return _NOT_WORD.sub("_", _CAMEL.sub("_", name.strip()).lower()).strip("_")


def parse_time(value: object) -> float | None:
    """Epoch seconds from an ISO-8601 string or epoch seconds/milliseconds; None if it is neither.

    A time without a zone is taken as UTC. Numbers at or above 10**11 are milliseconds.
    """
    if type(value) is str:
        known = _ISO_PARSED.get(value)
        if known is not None:
            return known
        text = value.strip()
        if text.isascii() and text.isdigit():  # str.isdigit() also takes '¹' and '٣', which float() does not
            seconds = float(text)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    elif type(value) is int or type(value) is float:
        seconds = float(value)
        if not math.isfinite(seconds):
            return None
    else:
        return None
    return seconds / 1000 if seconds >= _EPOCH_MS else seconds


def iso_time(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: ``'2026-11-29T12:00:00.000Z'``."""
    global _last_iso
    last = _last_iso
    if seconds == last[0]:  # every event of a request is received at the same time
        return last[1]
    thousandths = round(seconds * 1000)
    whole, millis = divmod(thousandths, 1000)
    prefix = _ISO_SECONDS.get(whole)
    if prefix is None:
        if len(_ISO_SECONDS) > 4096:
            _ISO_SECONDS.clear()
        prefix = _ISO_SECONDS[whole] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{prefix}.{millis:03d}Z"
    # What parse_time(text) computes (datetime.timestamp divides whole microseconds by 10**6, which
    # is this same rational, correctly rounded): pipelines read the timestamp back as event_time.
    if len(_ISO_PARSED) > 4096:
        _ISO_PARSED.clear()
    _ISO_PARSED[text] = thousandths / 1000
    _last_iso = (seconds, text)
    return text


# Busy collectors format the same second many times; the date part is cached per second, and the
# texts made recently are remembered with their value.
_ISO_SECONDS: dict[int, str] = {}
_ISO_PARSED: dict[str, float] = {}
_last_iso: tuple[float | None, str] = (None, "")


# ------------------------------------------------------------------ checks


def _unknown_key(key: object, reasons: list[str]) -> None:
    if type(key) is not str:
        reasons.append(f"keys must be strings, got {_show(key)}")
        return
    guess = difflib.get_close_matches(key, _KNOWN_NAMES, n=1, cutoff=0.8)
    if guess:
        reasons.append(f"{_show(key)}: unknown top-level key; did you mean {guess[0]!r}?")


def _check_names(out: dict[str, Any], kind: object, reasons: list[str]) -> None:
    if kind == "track":
        event = out.get("event")
        snake = _SNAKE_NAMES.get(event) if type(event) is str else None
        if snake is not None:  # a name seen before, which passed the tests below then
            out["event"] = snake
        elif type(event) is not str or not event.strip():
            reasons.append(f"event: a track call needs an event name, got {_show(event)}")
        elif len(event) > MAX_ID:
            reasons.append(f"event: longer than {MAX_ID} characters ({len(event)})")
        else:
            snake = snake_event_name(event)
            if len(_SNAKE_NAMES) >= 1024:
                _SNAKE_NAMES.clear()
            _SNAKE_NAMES[event] = snake
            out["event"] = snake
    elif "event" in out:
        del out["event"]
    if kind == "page":
        for key in ("name", "category"):
            value = out.get(key)
            if value is not None and (type(value) is not str or len(value) > MAX_ID):
                reasons.append(f"{key}: expected a string of at most {MAX_ID} characters, got {_show(value)}")
    else:  # most events have neither: a test is cheaper than pop(key, None) (on 3.11 and 3.13 alike)
        if "name" in out:
            del out["name"]
        if "category" in out:
            del out["category"]


# A shop sends a handful of event names, over and over: each is put in snake_case once.
_SNAKE_NAMES: dict[str, str] = {}


def _check_id(out: dict[str, Any], key: str, reasons: list[str]) -> None:
    value = out.get(key)
    if value is None:
        out.pop(key, None)
    elif type(value) is int:
        out[key] = str(value)
    elif type(value) is not str:
        reasons.append(f"{key}: expected a string, got {_show(value)}")
    elif len(value) > MAX_ID:
        reasons.append(f"{key}: longer than {MAX_ID} characters ({len(value)})")


def _fits(value: dict[str, Any] | list[Any], depth: int) -> bool:
    """Fast pass of :func:`_walk` without paths: True when every bound holds (the usual case)."""
    if depth > MAX_DEPTH:
        return False
    if type(value) is dict:
        if len(value) > MAX_KEYS:
            return False
        # Keys and values in one pass over items() (the verdict is the same in any order).
        item: Any
        for key, item in value.items():
            if type(key) is not str or len(key) > MAX_ID:
                return False
            kind = type(item)
            if kind is str:
                if len(item) > MAX_STRING:
                    return False
            elif kind in _SCALAR_TYPES:
                continue
            elif kind is dict or kind is list:
                if not _fits(item, depth + 1):
                    return False
            elif kind is not float or not math.isfinite(item):
                return False
        return True
    if len(value) > MAX_ITEMS:
        return False
    for item in value:
        kind = type(item)
        if kind is str:
            if len(item) > MAX_STRING:
                return False
        elif kind in _SCALAR_TYPES:
            continue
        elif kind is dict or kind is list:
            if not _fits(item, depth + 1):
                return False
        elif kind is not float or not math.isfinite(item):
            return False
    return True


def _short_json(value: dict[str, Any], depth: int) -> bool:
    """True when decoded ``value`` is so small as JSON that no bound of :func:`_fits` can fail.

    Its JSON text (orjson, in C) is at most :data:`_SHORT` bytes, so each key and string is at
    most that many characters (a character is at least one byte, escapes only add), and an object
    of it has fewer than ``_SHORT / 4`` keys (``"":0,``), an array fewer than ``_SHORT / 2`` items.
    Each object or array writes one ``{`` or ``[``, so their count bounds the nesting (brackets in
    strings only add to it). ``False`` says only "walk it".
    """
    try:
        text = orjson.dumps(value)
    except TypeError:  # e.g. nested deeper than orjson writes
        return False
    return len(text) <= _SHORT and text.count(b"{") + text.count(b"[") <= MAX_DEPTH - depth + 1


def _fits_decoded(value: dict[str, Any] | list[Any], depth: int) -> bool:
    """:func:`_fits` for data decoded from JSON, where only sizes and depth can be out of bounds.

    JSON gives string keys, and orjson refuses ``NaN``, ``Infinity`` and numbers that overflow a
    double, so what is left to test is depth, key and item counts and the lengths of keys and
    strings. ``tests/middleware/test_events_fast_paths.py`` proves it agrees with :func:`_fits` on
    decoded data.
    """
    if depth > MAX_DEPTH:
        return False
    item: Any
    if type(value) is dict:
        if len(value) > MAX_KEYS:
            return False
        for key, item in value.items():
            if len(key) > MAX_ID:
                return False
            kind = type(item)
            if kind is str:
                if len(item) > MAX_STRING:
                    return False
            elif (kind is dict or kind is list) and not _fits_decoded(item, depth + 1):
                return False
        return True
    if len(value) > MAX_ITEMS:
        return False
    for item in value:
        kind = type(item)
        if kind is str:
            if len(item) > MAX_STRING:
                return False
        elif (kind is dict or kind is list) and not _fits_decoded(item, depth + 1):
            return False
    return True


_SHORT = min(MAX_ID, MAX_STRING, 4 * MAX_KEYS, 2 * MAX_ITEMS)
_SCALAR_TYPES = frozenset({int, bool, type(None)})


def _walk(value: Any, path: str, depth: int, reasons: list[str]) -> None:
    """Bound untrusted nested data: depth, key count, array length, string length, JSON types."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_STRING:
            reasons.append(f"{path}: string longer than {MAX_STRING} characters ({len(value)})")
    elif kind is dict:
        if depth > MAX_DEPTH:
            reasons.append(f"{path}: nested deeper than {MAX_DEPTH} levels")
            return
        if len(value) > MAX_KEYS:
            reasons.append(f"{path}: more than {MAX_KEYS} keys ({len(value)})")
            return
        for key, item in value.items():
            if type(key) is not str:
                reasons.append(f"{path}: keys must be strings, got {_show(key)}")
            elif len(key) > MAX_ID:
                reasons.append(f"{path}: key longer than {MAX_ID} characters")
            elif type(item) is not str or len(item) > MAX_STRING:
                _walk(item, f"{path}.{key}", depth + 1, reasons)
    elif kind is list:
        if depth > MAX_DEPTH:
            reasons.append(f"{path}: nested deeper than {MAX_DEPTH} levels")
            return
        if len(value) > MAX_ITEMS:
            reasons.append(f"{path}: more than {MAX_ITEMS} items ({len(value)})")
            return
        for index, item in enumerate(value):
            if type(item) is not str or len(item) > MAX_STRING:
                _walk(item, f"{path}[{index}]", depth + 1, reasons)
    elif kind is float:
        if not math.isfinite(value):
            reasons.append(f"{path}: expected a finite number, got {value}")
    elif not (kind is int or kind is bool or value is None):
        reasons.append(f"{path}: expected a JSON value, got a {kind.__name__}")


def _check_properties(properties: dict[str, Any], reasons: list[str]) -> None:
    # Paths are built only for messages: a valid event pays one dict lookup per property.
    for key, value in properties.items():
        wanted = _PROPERTY_KINDS.get(key)
        # A JSON int, or a float where a number will do, is the common case: no call for it.
        if wanted is not None and type(value) is not int and not (type(value) is float and wanted == "a number") \
                and not _KIND_TESTS[wanted](value):
            reasons.append(f"properties.{key}: expected {wanted}, got {_show(value)}")
    products = properties.get("products")
    if products is None:
        return
    if type(products) is not list:
        reasons.append(f"properties.products: expected an array of products, got {_show(products)}")
        return
    for index, product in enumerate(products):
        if type(product) is not dict:
            reasons.append(f"properties.products[{index}]: expected a product object, got {_show(product)}")
            continue
        # Written out for the three fields (price, quantity, position, in that order): a JSON
        # int, or a float price, needs no call.
        value = product.get("price")
        if value is not None and type(value) is not int and type(value) is not float and not _is_number(value):
            reasons.append(f"properties.products[{index}].price: expected a number, got {_show(value)}")
        value = product.get("quantity")
        if value is not None and type(value) is not int and not _is_integer(value):
            reasons.append(f"properties.products[{index}].quantity: expected an integer, got {_show(value)}")
        value = product.get("position")
        if value is not None and type(value) is not int and not _is_integer(value):
            reasons.append(f"properties.products[{index}].position: expected an integer, got {_show(value)}")


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float or value is None:
        return True
    return kind is str and _NUMERIC_TEXT.fullmatch(value) is not None


def _is_integer(value: Any) -> bool:
    kind = type(value)
    if kind is int or value is None or (kind is float and value.is_integer()):
        return True
    return kind is str and _INTEGER_TEXT.fullmatch(value) is not None


_KIND_TESTS = {"a number": _is_number, "an integer": _is_integer}


def _check_times(out: dict[str, Any], received_at: float, reasons: list[str]) -> None:
    raw = out.pop("timestamp", None)
    original = out.pop("original_timestamp", None)
    if raw is None:
        raw = original
    sent_raw = out.pop("sent_at", None)
    stamp = None if raw is None else _time(raw, "timestamp", reasons)
    sent = None if sent_raw is None else _time(sent_raw, "sent_at", reasons)
    if stamp is None:
        corrected = received_at
    elif sent is None:
        corrected = stamp
    else:
        corrected = stamp - sent + received_at
    if raw is not None:
        # Kept for the deterministic message id: a resend carries the same original timestamp.
        out["original_timestamp"] = raw
    try:
        out["received_at"] = iso_time(received_at)
        out["timestamp"] = out["received_at"] if corrected == received_at else iso_time(corrected)
    except (ValueError, OverflowError, OSError):
        reasons.append(f"timestamp: {_show(raw)} corrected by sent_at {_show(sent_raw)} is not a usable time")


def _time(value: Any, path: str, reasons: list[str]) -> float | None:
    if value is None:
        return None
    seconds = parse_time(value)
    if seconds is None or not _plausible(seconds):
        reasons.append(
            f"{path}: expected an ISO-8601 time like '2026-11-29T12:00:00Z' or epoch seconds, got {_show(value)}"
        )
        return None
    return seconds


def _plausible(seconds: float) -> bool:
    return 0 <= seconds < (_YEAR_MAX - _YEAR_MIN) * 365.2425 * 86400


def _content_id(out: dict[str, Any]) -> str:
    context = out.get("context")
    page = context.get("page") if type(context) is dict else None
    content = [
        out.get("type"), out.get("event"), out.get("name"), out.get("user_id"), out.get("anonymous_id"),
        out.get("original_timestamp"), out.get("properties"), out.get("traits"), page,
    ]
    try:
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        canonical = repr(content).encode()
    return "ps-" + hashlib.sha256(canonical).hexdigest()[:32]


def _show(value: object, limit: int = 60) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
