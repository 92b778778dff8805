"""The v5 contract one field at a time, as Python expressions for generated code.

``validate_event`` (``contract.py``) checks a whole event of unknown shape: it walks every key
against the schema, then applies the rules. A pipeline knows which fields it can write, so the
pipeline code generator (``pipeline/codegen.py``) compiles its own check from these pieces and
reads only those fields; ``validate_event`` then runs only to explain an event the check refuses.

    test = field_test("custom_data.value")
    test.expression          # "type(v) is str and x_money_positive(v)"
    test.compiled()("72.39", now)   # True

Each expression is true exactly when ``validate_event`` has nothing to say about that field holding
the JSON value ``v`` (never ``None``: a pipeline writes no ``None``, and the caller handles absent
fields). It may be stricter on values JSON cannot carry (tuples), which only sends such an event to
``validate_event``. ``tests/pinterest/test_fields.py`` proves the agreement field by field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pinsignal.pinterest import contract
from pinsignal.pinterest.schema import INT64_MAX
from pinsignal.pinterest.schema_fast import compile_test

__all__ = ["NAMES", "REQUIRED", "USER_DATA_ALTERNATIVES", "FieldTest", "field_test"]

_DOCUMENT = json.loads(contract._SCHEMA_FILE.read_text(encoding="utf-8"))
_SCHEMAS: dict[str, Any] = _DOCUMENT["schemas"]
_EVENT: dict[str, Any] = _SCHEMAS[_DOCUMENT["root"]]["properties"]["data"]["items"]

REQUIRED: tuple[str, ...] = tuple(_EVENT["required"])
"""Top-level fields every event must have."""


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    if "$ref" in node:
        return _resolve(_SCHEMAS[node["$ref"].rsplit("/", 1)[-1]])
    return node


USER_DATA_ALTERNATIVES: tuple[tuple[str, ...], ...] = tuple(
    tuple(branch["required"]) for branch in _resolve(_EVENT["properties"]["user_data"])["anyOf"]
)
"""``user_data`` needs one of these sets of keys (``em``, or ``hashed_maids``, or IP and user agent)."""


# ------------------------------------------------------------------ helpers the expressions call

def _digests(values: list[Any]) -> bool:
    # str.strip of the hex digits empties exactly the lowercase digests (as contract._user_data).
    for item in values:
        if type(item) is not str or len(item) != 64 or item.strip("0123456789abcdef"):
            return False
    return True


def _strings(values: list[Any] | tuple[Any, ...]) -> bool:
    for item in values:
        if type(item) is not str:
            return False
    return True


def _ip(value: str) -> bool:
    # Every event of a request carries the visitor's address: verdicts are remembered.
    verdict = _IP_VERDICTS.get(value)
    if verdict is None:
        if contract._IPV4.fullmatch(value):
            verdict = value != "0.0.0.0"
        else:
            errors: list[str] = []
            contract._ip(value, "", errors)
            verdict = not errors
        if len(_IP_VERDICTS) >= 4096:
            _IP_VERDICTS.clear()
        _IP_VERDICTS[value] = verdict
    return verdict


_IP_VERDICTS: dict[str, bool] = {}


def _plain_decimal(value: str) -> bool:
    # "72.39", "10", "0.5": digits with at most one dot, the form pipelines write (as contract._money).
    return value.isascii() and value.replace(".", "", 1).isdigit()


def _money_positive(value: str) -> bool:
    if _plain_decimal(value):
        return value.strip("0.") != ""  # a plain decimal is positive unless it has no other digit
    return contract._money(value, positive=True) is None


def _contents(items: list[Any]) -> bool:
    types = _CONTENT_TYPES
    for item in items:
        if type(item) is not dict:
            return False
        for key, value in item.items():
            kind = type(value)  # (so that mypy keeps value as Any: typing.cast would be a call here)
            if types.get(key) is not kind:
                return False
            if key == "item_price":
                # _plain_decimal written out (one call less per item), then the full rule.
                if not (value.isascii() and value.replace(".", "", 1).isdigit()) \
                        and contract._money(value, positive=False) is not None:
                    return False
            elif key == "quantity" and not 0 <= value <= INT64_MAX:
                return False
    return True


_CONTENT_TYPES: dict[str, type] = {"id": str, "item_brand": str, "item_category": str, "item_name": str,
                                   "item_price": str, "quantity": int}

NAMES: dict[str, Any] = {
    "x_AGE": contract.MAX_EVENT_AGE, "x_SKEW": contract.MAX_FUTURE_SKEW, "x_FLOOR": contract.MILLISECONDS_FLOOR,
    "x_INT64_MAX": INT64_MAX, "x_EVENT_NAMES": contract.STANDARD_EVENT_NAMES, "x_SOURCES": contract.ACTION_SOURCES,
    "x_digests": _digests, "x_strings": _strings, "x_ip": _ip, "x_money_positive": _money_positive,
    "x_contents": _contents,
}
"""Every name an expression may use besides ``v`` and ``now`` (all start with ``x_``)."""

# The fields with documented rules beyond their schema (contract.rule_errors), written out whole.
_RULES: dict[str, str] = {
    "event_time": "type(v) is int and now - x_AGE <= v <= now + x_SKEW and v < x_FLOOR",
    "event_name": "type(v) is str and v in x_EVENT_NAMES",
    "action_source": "type(v) is str and v in x_SOURCES",
    "event_id": "type(v) is str and v.strip() != ''",
    "user_data.client_ip_address": "type(v) is str and x_ip(v)",
    "user_data.client_user_agent": "type(v) is str and v.strip() != ''",
    "custom_data.value": "type(v) is str and x_money_positive(v)",
    "custom_data.predicted_ltv": "type(v) is str and x_money_positive(v)",
    "custom_data.num_items": "type(v) is int and 0 <= v <= x_INT64_MAX",
    "custom_data.currency": "type(v) is str and len(v) == 3 and v.isascii() and v.isalpha() and v.isupper()",
    "custom_data.contents": "type(v) is list and x_contents(v)",
}
_HASHED = "type(v) is list and x_digests(v)"
_PLAIN = {"string": "type(v) is str", "integer": "type(v) is int", "boolean": "type(v) is bool",
          "number": "(type(v) is int or type(v) is float)"}


@dataclass(frozen=True)
class FieldTest:
    """``expression`` over ``v`` (and ``now`` when ``uses_now``), with the extra ``names`` it needs."""

    path: str
    expression: str
    names: Mapping[str, Any] = field(default_factory=dict)
    uses_now: bool = False

    def compiled(self) -> Callable[[Any, float], bool]:
        """The expression as ``test(v, now)`` (for checks at compile time and for tests)."""
        namespace = {**NAMES, **self.names}
        test: Callable[[Any, float], bool] = eval(f"lambda v, now: bool({self.expression})", namespace)
        return test


@cache
def field_test(path: str) -> FieldTest:
    """The test of one writable v5 field (a dotted path, as in ``pipeline.spec.TARGETS``)."""
    if path in _RULES:
        return FieldTest(path, _RULES[path], uses_now="now" in _RULES[path])
    node = _leaf(path)
    if path.startswith("user_data.") and node.get("type") == "array":
        return FieldTest(path, _HASHED)
    kind = node.get("type")
    items = node.get("items", {})
    # The same split as schema_fast's objects: plain typed fields and arrays of plain items inline,
    # anything with bounds, lengths or enums through the compiled schema test.
    if node.keys() <= {"type", "nullable"} and kind in _PLAIN:
        return FieldTest(path, _PLAIN[kind])
    if node.keys() <= {"type", "items"} and kind == "array" and items == {"type": "string"}:
        return FieldTest(path, "(type(v) is list or type(v) is tuple) and x_strings(v)")
    name = "x_schema_" + path.replace(".", "_")
    return FieldTest(path, f"{name}(v)", {name: compile_test(_SCHEMAS, node)})


def _leaf(path: str) -> Mapping[str, Any]:
    node: Mapping[str, Any] = _EVENT
    for key in path.split("."):
        node = _resolve(node)
        if "anyOf" in node:  # user_data: every branch is the same object with different required keys
            node = _resolve(node["anyOf"][0])
        node = node["properties"][key]
    return _resolve(node)
