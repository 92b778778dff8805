"""The one table of Pinterest v5 event fields: what each field *is*, beyond its JSON type.

Pinterest's schema (``events_schema.json``) says which fields exist and their JSON types. This
table says the rest: a SHA-256 match key and the normaliser it needs, money, a count, a field that
is never hashed, the ``identify()`` trait that feeds it, the match key the metrics count it as,
and the documented rule the contract checks on it. Everything else derives from it:

* pipeline targets (``pipeline/spec.py`` :data:`TARGETS`: the schema's fields, of the kind given
  here, plain ones by their JSON type) and how values are coerced to them, contents items included;
* :data:`HASHED_FIELDS`, :data:`MONEY_FIELDS`, :data:`NEVER_HASHED` and the normaliser of each
  hashed key (:data:`NORMALISERS`, names of functions in ``pipeline/normalise.py``);
* :data:`IDENTITY_TRAITS`, :data:`MATCH_KEYS` and :data:`MATCH_KEY_FIELDS` (the metrics' mask);
* :data:`RULES`, the contract's rules (``contract.py``), each pipeline's own check of them
  (``pipeline/checks.py``, through ``contract.rule_check``) and the loader's hashing checks.

Adding a hashed field is one row (plus a normaliser when none of the existing ones fits); adding a
money field is one row. ``tests/pinterest/test_fields.py`` checks that every derived set follows.
A path ``custom_data.contents[].item_price`` is a field of each item of the ``contents`` array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FIELDS",
    "HASHED_FIELDS",
    "IDENTITY_TRAITS",
    "ITEM_KINDS",
    "KINDS",
    "MATCH_KEYS",
    "MATCH_KEY_FIELDS",
    "MONEY_FIELDS",
    "NEVER_HASHED",
    "NORMALISERS",
    "RULES",
    "Kind",
    "Rule",
    "V5Field",
]

Kind = Literal["string", "integer", "boolean", "money", "currency", "hashed", "strings", "contents"]
"""How a pipeline coerces a value for the field: ``money`` -> decimal string, ``hashed`` -> array of digests..."""

Rule = Literal["event_time", "event_name", "action_source", "dedup_key", "not_empty", "digests", "ip",
               "positive_money", "money", "count", "currency"]
"""A documented rule the schema cannot say (the checks themselves are in ``contract.py``)."""


@dataclass(frozen=True)
class V5Field:
    """One row: a dotted ``path`` in the event and what the field is."""

    path: str
    kind: Kind
    rule: Rule | None = None
    normaliser: str | None = None
    """For a hashed field: the name of its normaliser in ``pipeline/normalise.py``."""
    trait: str | None = None
    """The ``identify()`` trait whose value is this field's match key (remembered in ``_psu``)."""
    match_key: str | None = None
    """The match key the metrics count this field as; fields sharing a label count only together."""


FIELDS: tuple[V5Field, ...] = (
    V5Field("event_name", "string", rule="event_name"),
    V5Field("action_source", "string", rule="action_source"),
    V5Field("event_time", "integer", rule="event_time"),
    V5Field("event_id", "string", rule="dedup_key"),
    # user_data: the match keys, in the reference's order (section 4.2). The metrics' bits follow
    # the order of first appearance of each match_key label, so a new one goes after ip_ua.
    V5Field("user_data.em", "hashed", "digests", normaliser="email", trait="email", match_key="em"),
    V5Field("user_data.ph", "hashed", "digests", normaliser="phone", trait="phone", match_key="ph"),
    V5Field("user_data.fn", "hashed", "digests", normaliser="name", trait="first_name"),
    V5Field("user_data.ln", "hashed", "digests", normaliser="name", trait="last_name"),
    V5Field("user_data.ge", "hashed", "digests", normaliser="gender", trait="gender"),
    V5Field("user_data.db", "hashed", "digests", normaliser="birthday", trait="birthday"),
    V5Field("user_data.ct", "hashed", "digests", normaliser="city", trait="city"),
    V5Field("user_data.st", "hashed", "digests", normaliser="state", trait="state"),
    V5Field("user_data.zp", "hashed", "digests", normaliser="zip", trait="zip"),
    V5Field("user_data.country", "hashed", "digests", normaliser="country", trait="country"),
    V5Field("user_data.external_id", "hashed", "digests", normaliser="lowercase", match_key="external_id"),
    V5Field("user_data.hashed_maids", "hashed", "digests", normaliser="lowercase"),
    V5Field("user_data.click_id", "string", match_key="click_id"),
    V5Field("user_data.client_ip_address", "string", "ip", match_key="ip_ua"),
    V5Field("user_data.client_user_agent", "string", "not_empty", match_key="ip_ua"),
    V5Field("user_data.partner_id", "string"),
    V5Field("custom_data.currency", "currency", "currency"),
    V5Field("custom_data.value", "money", "positive_money"),
    V5Field("custom_data.predicted_ltv", "money", "positive_money"),
    V5Field("custom_data.num_items", "integer", "count"),
    V5Field("custom_data.contents", "contents"),
    V5Field("custom_data.contents[].item_price", "money", "money"),
    V5Field("custom_data.contents[].quantity", "integer", "count"),
)
"""Every v5 field that means more than its JSON type (the others are plain fields of the schema)."""

_USER = "user_data."
_ITEMS = "custom_data.contents[]."

KINDS: dict[str, Kind] = {row.path: row.kind for row in FIELDS if "[]" not in row.path}
"""Pipeline target -> kind, for the targets of this table (``spec.TARGETS`` adds the plain ones)."""
ITEM_KINDS: dict[str, Kind] = {row.path.removeprefix(_ITEMS): row.kind for row in FIELDS if row.path.startswith(_ITEMS)}
"""Field of a ``contents`` item -> kind (fields not named here are strings)."""
HASHED_FIELDS: tuple[str, ...] = tuple(row.path.removeprefix(_USER) for row in FIELDS if row.kind == "hashed")
"""``user_data`` keys that carry SHA-256 hex digests (arrays of strings)."""
NEVER_HASHED: tuple[str, ...] = tuple(row.path for row in FIELDS if row.path.startswith(_USER) and row.kind != "hashed")
"""``user_data`` fields sent as they are (click id, IP, user agent, partner id)."""
MONEY_FIELDS: tuple[str, ...] = tuple(row.path for row in FIELDS if row.kind == "money")
"""Fields holding decimal strings (``contents[].item_price`` may be zero, the others must be positive)."""
NORMALISERS: dict[str, str] = {row.path.removeprefix(_USER): row.normaliser or "" for row in FIELDS
                               if row.kind == "hashed"}
"""Hashed key -> the name of its normaliser in ``pipeline/normalise.py``."""
IDENTITY_TRAITS: dict[str, str] = {row.trait: row.path.removeprefix(_USER) for row in FIELDS if row.trait}
"""``identify()`` trait -> the hashed key whose normalisation applies (``email`` -> ``em``)."""
MATCH_KEY_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (label, tuple(row.path.removeprefix(_USER) for row in FIELDS if row.match_key == label))
    for label in dict.fromkeys(row.match_key for row in FIELDS if row.match_key)
)
"""(match key, the ``user_data`` keys it needs, all of them): bit i of the metrics' mask is entry i."""
MATCH_KEYS: tuple[str, ...] = tuple(label for label, _ in MATCH_KEY_FIELDS)
"""The match keys the metrics count, in bit order."""
RULES: dict[str, Rule] = {row.path: row.rule for row in FIELDS if row.rule}
"""Field -> the documented rule ``contract.rule_errors`` checks on it."""
