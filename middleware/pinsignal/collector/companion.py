"""Tag companion mode: the rules ``t.js`` uses to hand each browser event to the Pinterest Tag.

With the Tag still on the page, every event pinsignal sends from the browser should reach Pinterest
twice with one ``event_id`` (``pintrk('track', name, {event_id, ...})`` and the API event), so
Pinterest keeps one. The Tag's event for an incoming event is whatever the loaded pipelines make of
it, so the rules are made from them at start-up, never from a second table of event names:

* when: the pipeline's trigger (event types and its ANDed conditions, the same 13 operators);
* the Tag's name: the pipeline's static ``event_name`` without underscores (``page_visit`` ->
  ``pagevisit``, ``add_to_cart`` -> ``addtocart``), which is how Pinterest names the Tag's events;
* ``event_id``: the sources of the pipeline's ``dedup`` step;
* parameters: the sources (and ``default``, ``sum`` or ``contents`` transform) of the steps that
  write ``custom_data.value``, ``currency``, ``order_id``, ``num_items`` and ``contents``, under
  the Tag's names ``value``, ``currency``, ``order_id``, ``order_quantity`` and ``line_items``
  (and ``search_string`` as ``search_query``).

A pipeline whose event name or event id the browser cannot work out the same way (a name from a
mapping, a dedup step with a transform) gets no rule, and says so in the log at start-up: a Tag call
with another id would be counted twice, which is worse than none. A parameter the browser cannot
reproduce is left out of the Tag call; the event still pairs up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from pinsignal.pipeline.spec import Pipeline, Step, TransformCall
from pinsignal.pipeline.transforms import _PRODUCT_FIELDS

__all__ = ["TAG_PARAMETERS", "line_item_field", "tag_name", "tag_rules"]

logger = logging.getLogger("pinsignal.collector")

# The v5 custom_data field -> the Tag's parameter of the same meaning (Pinterest's two products name
# them differently; this is a fact about Pinterest, not a choice of events).
TAG_PARAMETERS: dict[str, str] = {
    "custom_data.value": "value",
    "custom_data.currency": "currency",
    "custom_data.order_id": "order_id",
    "custom_data.num_items": "order_quantity",
    "custom_data.contents": "line_items",
    "custom_data.search_string": "search_query",
}
# v5 contents item field -> the Tag's line_items field.
_LINE_ITEM_FIELDS: dict[str, str] = {
    "id": "product_id", "item_price": "product_price", "quantity": "product_quantity",
    "item_name": "product_name", "item_category": "product_category", "item_brand": "product_brand",
}
# Transforms that t.js does exactly as the pipelines do, for a parameter's value.
_SAME_VALUE = frozenset({"to_float", "to_int", "to_money_string", "to_string"})

Rule = list[Any]  # [event types, [[field, operator, value]...], tag name, id sources, [parameter...]]


def tag_name(event_name: str) -> str:
    """The Pinterest Tag's name for a v5 ``event_name``: ``add_to_cart`` -> ``addtocart``."""
    return event_name.replace("_", "")


def line_item_field(field: str) -> str | None:
    """The Tag's ``line_items`` field for a v5 ``contents`` field (``item_price`` -> ``product_price``)."""
    return _LINE_ITEM_FIELDS.get(field)


def tag_rules(pipelines: Iterable[Pipeline]) -> list[Rule]:
    """One rule per pipeline the browser can mirror, in load order (the order the engine runs them)."""
    rules: list[Rule] = []
    for pipeline in pipelines:
        if not pipeline.enabled:
            continue
        rule = _rule(pipeline)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(pipeline: Pipeline) -> Rule | None:
    steps = [step for step in pipeline.steps if isinstance(step, Step)]
    name = next((step.value for step in steps if step.target == "event_name" and step.section == "static"), None)
    dedup = next((step for step in steps if step.target == "event_id"), None)
    where = f"{pipeline.file}:{pipeline.line}"
    if type(name) is not str or not name:
        logger.warning("%s: pipeline %r has no static event_name; Tag companion mode leaves its events to the "
                       "server alone", where, pipeline.name)
        return None
    if dedup is None or dedup.transforms or not dedup.sources:
        logger.warning("%s: pipeline %r does not take event_id straight from the event; Tag companion mode "
                       "leaves its events to the server alone, so they are not counted twice", where, pipeline.name)
        return None
    conditions = [[condition.field, condition.operator, condition.value] for condition in pipeline.conditions]
    parameters: list[list[Any]] = []
    for step in steps:
        parameter = TAG_PARAMETERS.get(step.target)
        if parameter is None or not step.sources:
            continue
        kind, argument = _transform(step.transforms)
        if kind is None:
            logger.info("%s: %s of pipeline %r uses a transform the browser does not repeat; the Tag call "
                        "leaves %s out", where, step.target, pipeline.name, parameter)
            continue
        default = step.default if step.has_default else None
        parameters.append([parameter, list(step.sources), kind, argument, default])
    return [list(pipeline.events), conditions, tag_name(name), list(dedup.sources), parameters]


def _transform(transforms: Sequence[TransformCall]) -> tuple[str | None, Any]:
    """``("", None)`` for a plain copy, ``("sum", field)``, ``("contents", fields)``, or ``(None, None)``."""
    kept = [call for call in transforms if call.name not in _SAME_VALUE]
    if not kept:
        return "", None
    if len(kept) > 1:
        return None, None
    call = kept[0]
    if call.name == "sum":
        return "sum", str(call.params.get("field", ""))
    if call.name == "contents":
        fields = dict(_PRODUCT_FIELDS)
        for key, sources in dict(call.params.get("fields") or {}).items():
            fields[str(key)] = tuple(str(source) for source in (sources if isinstance(sources, list) else [sources]))
        return "contents", [[_LINE_ITEM_FIELDS[key], list(sources)] for key, sources in fields.items()
                            if key in _LINE_ITEM_FIELDS and sources]
    return None, None
