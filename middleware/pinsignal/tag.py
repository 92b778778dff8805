"""The Pinterest Tag beside pinsignal, for server-side conversions (migrating from the Tag).

A conversion sent by ``track()`` on the server (a checkout, a sign-up) can also be reported by the
Tag on the page that follows, with the same ``event_id``, so Pinterest counts it once. The helper
renders the Tag's call for exactly the events the server sent:

    from pinsignal import tag_call, track

    result = await track(request, "order_completed", properties=..., message_id=f"order-{order.id}")
    ...
    # in the order page's template (Jinja2 sees it as safe HTML; elsewhere it is a plain str):
    {{ tag_call(result) }}
    # -> <script>window.pintrk&&pintrk("track","checkout",{"event_id":"order-1042","value":72.39,...});</script>

``tag_call(result).event_id`` is the id on its own, for a template that writes its own call. Browser
events need none of this: c.js's Tag companion mode (``data-tag``) hands them to the Tag itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pinsignal.collector.companion import TAG_PARAMETERS, line_item_field, tag_name
from pinsignal.tracking import TrackResult

__all__ = ["TagCall", "tag_call", "tag_parameters"]

_NUMBERS = frozenset({"value", "order_quantity", "product_price", "product_quantity"})


class TagCall(str):
    """A ``<script>`` with the Tag's calls (empty when nothing was sent), safe to put in a page as it is.

    ``event_id`` is the id the server sent; ``__html__`` lets Jinja2 and MarkupSafe keep it unescaped.
    """

    event_id: str

    def __new__(cls, html: str, event_id: str) -> TagCall:
        call = super().__new__(cls, html)
        call.event_id = event_id
        return call

    def __html__(self) -> str:
        return str(self)


def tag_parameters(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Tag's parameters for one Pinterest v5 event: ``event_id``, ``value``, ``currency``, ``order_id``,
    ``order_quantity``, ``line_items`` and ``search_query``, from its ``custom_data``."""
    parameters: dict[str, Any] = {"event_id": event["event_id"]}
    custom = event.get("custom_data") or {}
    for target, name in TAG_PARAMETERS.items():
        value = custom.get(target.removeprefix("custom_data."))
        if name == "line_items" and isinstance(value, list):
            value = [_line_item(item) for item in value if isinstance(item, Mapping)]
        elif name in _NUMBERS:
            value = _number(value)
        if value is not None and value != "" and value != []:
            parameters[name] = value
    return parameters


def _line_item(item: Mapping[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = {}
    for key, value in item.items():
        name = line_item_field(key)
        if name is not None:
            line[name] = _number(value) if name in _NUMBERS else value
    return line


def tag_call(result: TrackResult) -> TagCall:
    """The Tag's ``pintrk('track', ...)`` for each event ``track()`` sent, in one ``<script>``.

    Nothing (an empty string) when the server sent nothing: no consent, a crawler, no pipeline.
    A retry of an event already queued renders the call again; Pinterest keeps one of them.
    """
    if result.skipped or not result.events:
        return TagCall("", result.event_id)
    calls = "".join(f"pintrk(\"track\",{_js(tag_name(event['event_name']))},{_js(tag_parameters(event))});"
                    for event in result.events)
    return TagCall(f"<script>window.pintrk&&function(){{{calls}}}();</script>", result.event_id)


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and "." not in str(value) else number


def _js(value: Any) -> str:
    """JSON that is also safe inside an inline ``<script>`` (no ``</script>`` or ``<!--`` breakout)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text
