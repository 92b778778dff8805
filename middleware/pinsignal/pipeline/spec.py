"""Typed pipeline objects (what the loader makes of a YAML file) and the table of v5 targets.

A :class:`Pipeline` is immutable and knows where it came from (``file``, ``line``) so that every
later message can point at the YAML. :data:`TARGETS` lists every field of a Pinterest v5 event a
step may write, with the kind of value it takes: the fields of the same ``events_schema.json`` the
contract validates against, of the kind the field table (``pinterest/fields.py``) gives them, and
the plain ones by their JSON type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pinsignal.pinterest.fields import KINDS, Kind

__all__ = [
    "OPERATORS",
    "SECTIONS",
    "TARGETS",
    "Condition",
    "Enrichment",
    "EventType",
    "Operator",
    "Output",
    "Pipeline",
    "Section",
    "Step",
    "TargetKind",
    "TransformCall",
]

EventType = Literal["track", "page", "identify"]
Operator = Literal[
    "equals", "not_equals", "in", "not_in", "exists", "not_exists", "contains", "starts_with", "matches",
    "gt", "gte", "lt", "lte",
]
OPERATORS: tuple[Operator, ...] = (
    "equals", "not_equals", "in", "not_in", "exists", "not_exists", "contains", "starts_with", "matches",
    "gt", "gte", "lt", "lte",
)
Section = Literal["static", "mapping", "dedup", "context", "user_data", "enrichments", "custom_data"]
SECTIONS: tuple[Section, ...] = ("static", "mapping", "dedup", "context", "user_data", "enrichments", "custom_data")
"""The ``transform`` sections, in the order they are applied."""

TargetKind = Kind
"""How a value is coerced for its target: ``money`` -> decimal string, ``hashed`` -> array of digests..."""


@dataclass(frozen=True)
class TransformCall:
    """One use of a registered transform, with its parameters (``field`` for ``pluck``...)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class Condition:
    """``field`` (a dotted path in the envelope) compared with ``value`` by ``operator``."""

    field: str
    operator: Operator
    value: Any = None
    line: int = 0


@dataclass(frozen=True)
class Step:
    """Write one target: a ``static`` value, or the first present ``sources`` path, transformed.

    ``default`` is used when the sources are missing or the transforms drop the value.
    """

    section: Section
    target: str
    sources: tuple[str, ...] = ()
    value: Any = None
    transforms: tuple[TransformCall, ...] = ()
    default: Any = None
    has_default: bool = False
    line: int = 0


@dataclass(frozen=True)
class Enrichment:
    """A value looked up outside the event body.

    ``click_id``: ``param`` in the event's page URL, then the request's ``epik``, then ``cookies``.
    ``identity``: the user id (``sources``, default ``user_id``), hashed as ``external_id``.
    """

    type: Literal["click_id", "identity"]
    target: str
    param: str | None = None
    cookies: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    transforms: tuple[TransformCall, ...] = ()
    default: Any = None
    has_default: bool = False
    line: int = 0


@dataclass(frozen=True)
class Output:
    """Where events go and whether they are checked against the v5 contract first."""

    format: str = "pinterest_conversions_api"
    endpoint: str | None = None
    auth: str = "access_token"
    validate: bool = True


@dataclass(frozen=True)
class Pipeline:
    """One YAML file: when it fires (``events`` + ANDed ``conditions``) and what it writes."""

    name: str
    events: tuple[EventType, ...]
    conditions: tuple[Condition, ...] = ()
    steps: tuple[Step | Enrichment, ...] = ()
    output: Output = field(default_factory=Output)
    integration: str = "pinterest-conversions-api"
    description: str | None = None
    enabled: bool = True
    file: str = "<memory>"
    line: int = 1
    sources: frozenset[str] | None = None
    """``trigger.source``: the sources (``browser``, ``server``) it takes events from; ``None``: any."""

    @property
    def cookie_names(self) -> frozenset[str]:
        """Cookies the ``click_id`` enrichments read."""
        return frozenset(name for step in self.steps if isinstance(step, Enrichment) for name in step.cookies)


def _targets() -> dict[str, TargetKind]:
    document = json.loads(Path(__file__).parent.parent.joinpath("pinterest", "events_schema.json").read_text("utf-8"))
    schemas = document["schemas"]
    plain: dict[str, TargetKind] = {"string": "string", "integer": "integer", "boolean": "boolean", "array": "strings"}

    def resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
        if "$ref" in node:
            return resolve(schemas[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return resolve(node["anyOf"][0])
        return node

    found: dict[str, TargetKind] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for name, sub in resolve(node).get("properties", {}).items():
            sub = resolve(sub)
            path = f"{prefix}{name}"
            if "properties" in sub:
                walk(path + ".", sub)
            elif path in KINDS or sub.get("type") in plain:
                found[path] = KINDS.get(path) or plain[sub["type"]]

    walk("", schemas[document["root"]]["properties"]["data"]["items"])
    return found | KINDS  # with the table's fields that Pinterest's schema leaves open (user_data takes any key)


TARGETS: dict[str, TargetKind] = _targets()
"""Every writable v5 field (dotted path) and its :data:`TargetKind`."""
