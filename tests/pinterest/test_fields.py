"""The field table (pinterest/fields.py): every derived set follows it, and a new row reaches all of them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from pinsignal.collector import intake
from pinsignal.errors import PipelineLoadError
from pinsignal.metrics import MATCH_KEYS, match_key_mask
from pinsignal.pinterest import contract, fields
from pinsignal.pinterest.fields import FIELDS, HASHED_FIELDS, MONEY_FIELDS, NEVER_HASHED
from pinsignal.pinterest.schema import SCHEMA_FILE
from pinsignal.pipeline import load_pipeline_text
from pinsignal.pipeline.coerce import COERCERS, CONTENT_COERCERS, money_string
from pinsignal.pipeline.normalise import HASHED_FIELDS as NORMALISED_FIELDS, NORMALISERS_BY_NAME, normalise
from pinsignal.pipeline.spec import TARGETS
from pinsignal.queue import entry_meta

NOW = 1_795_000_000.0
DIGEST = "0123456789abcdef" * 4
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["schemas"]
PIPELINE = """
name: t
trigger: {event: track}
transform:
  static: [{target: event_name, value: checkout}, {target: action_source, value: web}]
  mapping: [{source: timestamp, target: event_time, transform: unix_seconds}]
  dedup: [{source: message_id, target: event_id}]
  user_data: [{source: traits.x, target: %s%s}]
"""


def load_error(target: str, transform: str) -> str:
    try:
        load_pipeline_text(PIPELINE % (target, f", transform: {transform}" if transform else ""))
    except PipelineLoadError as exc:
        return "\n".join(exc.errors)
    return ""


def test_rows_are_unique_and_name_fields_of_the_schema() -> None:
    paths = [row.path for row in FIELDS]
    assert len(paths) == len(set(paths))
    user_data = SCHEMA["ConversionEventsUserDataProperties"]["properties"]
    custom_data = SCHEMA["ConversionEvents"]["properties"]["data"]["items"]["properties"]["custom_data"]["properties"]
    item = custom_data["contents"]["items"]["properties"]
    for path in paths:
        head, _, key = path.rpartition(".")
        where = {"": SCHEMA["ConversionEvents"]["properties"]["data"]["items"]["properties"], "user_data": user_data,
                 "custom_data": custom_data, "custom_data.contents[]": item}[head]
        assert key in where, path


def test_every_array_of_user_data_is_a_hashed_row() -> None:
    arrays = {key for key, node in SCHEMA["ConversionEventsUserDataProperties"]["properties"].items()
              if node.get("type") == "array"}
    assert arrays == set(HASHED_FIELDS)
    assert len(HASHED_FIELDS) == 12 and "click_id" not in HASHED_FIELDS


def test_targets_take_the_kind_of_their_row() -> None:
    for row in FIELDS:
        if "[]" not in row.path:
            assert TARGETS[row.path] == row.kind, row.path
    assert {path for path, kind in TARGETS.items() if kind == "hashed"} == {f"user_data.{k}" for k in HASHED_FIELDS}
    assert {path for path, kind in TARGETS.items() if kind == "money"} == {p for p in MONEY_FIELDS if "[]" not in p}


def test_money_is_coerced_to_decimal_strings() -> None:
    assert set(MONEY_FIELDS) == {"custom_data.value", "custom_data.predicted_ltv", "custom_data.contents[].item_price"}
    for path in MONEY_FIELDS:
        coerce = CONTENT_COERCERS[path.rpartition(".")[2]] if "[]" in path else COERCERS[TARGETS[path]]
        assert coerce is money_string and coerce(72.39) == "72.39"


def test_each_hashed_key_has_its_normaliser() -> None:
    assert NORMALISED_FIELDS == HASHED_FIELDS
    assert set(fields.NORMALISERS) == set(HASHED_FIELDS)
    assert set(fields.NORMALISERS.values()) <= set(NORMALISERS_BY_NAME)
    assert normalise("em", " A@B.co ") == "a@b.co"
    assert normalise("ct", "Menlo Park") == "menlopark"


def test_the_loader_applies_the_hashing_rules_of_the_table() -> None:
    for key in HASHED_FIELDS:
        assert "add transform: normalised_sha256" in load_error(f"user_data.{key}", "")
        assert load_error(f"user_data.{key}", "normalised_sha256") == ""
    assert set(NEVER_HASHED) == {"user_data.click_id", "user_data.client_ip_address", "user_data.client_user_agent",
                                 "user_data.partner_id"}
    for path in NEVER_HASHED:
        assert "is never hashed" in load_error(path, "sha256")
        assert load_error(path, "") == ""


def test_identity_traits_come_from_the_table_and_the_collector_agrees() -> None:
    assert fields.IDENTITY_TRAITS == {"email": "em", "phone": "ph", "first_name": "fn", "last_name": "ln",
                                      "gender": "ge", "birthday": "db", "city": "ct", "state": "st", "zip": "zp",
                                      "country": "country"}
    assert intake.IDENTITY_TRAITS is fields.IDENTITY_TRAITS  # the collector's identify() reads the table


def test_the_match_key_mask_follows_the_table_in_the_metrics_and_the_queue() -> None:
    # Masks are stored with queued events: the bit order may only grow at the end.
    assert MATCH_KEYS == ("em", "ph", "external_id", "click_id", "ip_ua")
    keys = [key for _, group in fields.MATCH_KEY_FIELDS for key in group] + ["fn"]
    for size in range(len(keys) + 1):
        for present in combinations(keys, size):
            event = {"event_name": "checkout", "event_id": "e", "user_data": {key: "x" for key in present}}
            expected = sum(1 << bit for bit, (_, group) in enumerate(fields.MATCH_KEY_FIELDS)
                           if set(group) <= set(present))
            assert match_key_mask(event) == expected
            assert entry_meta(event).rpartition("|")[2] == str(expected)


BAD = {"event_time": int(NOW * 1000), "event_name": "buy", "action_source": "site", "dedup_key": " ",
       "not_empty": "", "digests": ["jane@example.com"], "ip": "999.1.1.1", "positive_money": "0", "money": "-1",
       "count": -1, "currency": "usd"}
GOOD = {"event_time": int(NOW), "event_name": "checkout", "action_source": "web", "dedup_key": "e",
        "not_empty": "UA", "digests": [DIGEST], "ip": "2001:db8::1", "positive_money": "0.01", "money": "0",
        "count": 0, "currency": "EUR"}


@pytest.mark.parametrize("row", [row for row in FIELDS if row.rule], ids=lambda row: row.path)
def test_each_rule_of_the_table_is_checked_at_its_path(row: fields.V5Field) -> None:
    assert row.rule is not None
    for value, fails in ((BAD[row.rule], True), (GOOD[row.rule], False)):
        event: dict[str, Any] = {}
        node = event
        *parents, key = row.path.split(".")
        for parent in parents:
            if parent.endswith("[]"):
                item: dict[str, Any] = {}
                node[parent[:-2]] = [item]
                node = item
            else:
                node = node.setdefault(parent, {})
        node[key] = value
        errors = contract.rule_errors(event, now=NOW)
        where = row.path.replace("[]", "[0]") + ("[0]" if row.rule == "digests" else "")
        assert [error.partition(":")[0] for error in errors] == ([where] if fails else []), errors


def test_a_new_hashed_row_and_a_new_money_row_reach_everything(tmp_path: Path) -> None:
    """Adding a field is one row: here two are added to a copy of the table, in a fresh interpreter."""
    script = textwrap.dedent('''
        import importlib.util, sys
        import pinsignal.pinterest
        spec = importlib.util.find_spec("pinsignal.pinterest.fields")
        source = spec.loader.get_source("pinsignal.pinterest.fields")
        marker = "FIELDS: tuple[V5Field, ...] = ("
        rows = ('V5Field("user_data.work_email", "hashed", "digests", normaliser="email", trait="work_email"),'
                'V5Field("custom_data.search_string", "money", "positive_money"),')
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        exec(compile(source.replace(marker, marker + rows), spec.origin, "exec"), module.__dict__)

        from pinsignal.errors import PipelineLoadError
        from pinsignal.pinterest import contract, fields
        from pinsignal.pipeline import Engine, load_pipeline_text
        from pinsignal.pipeline.normalise import hash_match_key, sha256_hex
        from pinsignal.pipeline.spec import TARGETS

        assert "work_email" in contract.HASHED_FIELDS and fields.IDENTITY_TRAITS["work_email"] == "work_email"
        assert TARGETS["user_data.work_email"] == "hashed" and TARGETS["custom_data.search_string"] == "money"
        assert hash_match_key("work_email", " A@B.co ") == sha256_hex("a@b.co")
        text = """
        name: t
        trigger: {event: track}
        transform:
          static: [{target: event_name, value: search}, {target: action_source, value: web}]
          mapping: [{source: timestamp, target: event_time}]
          dedup: [{source: message_id, target: event_id}]
          user_data: [{source: traits.work, target: work_email, transform: normalised_sha256},
                      {source: traits.email, target: em, transform: normalised_sha256}]
          custom_data: [{source: properties.q, target: search_string}]
        """
        try:
            load_pipeline_text(text.replace(", transform: normalised_sha256}", "}", 1))
        except PipelineLoadError as exc:
            assert "work_email holds SHA-256 digests" in str(exc.errors)
        else:
            raise AssertionError("a hashed field without a hashing transform loaded")
        engine = Engine([load_pipeline_text(text)])
        envelope = {"type": "track", "message_id": "m", "timestamp": 1795000000,
                    "traits": {"work": "W@B.co", "email": "a@b.co"}, "properties": {"q": 12.5}}
        (good,) = engine.process(envelope, now=1795000000.0)
        assert good.errors == [], good.errors
        assert good.event["user_data"]["work_email"] == [sha256_hex("w@b.co")]
        assert good.event["custom_data"]["search_string"] == "12.5"
        envelope["properties"]["q"] = 0
        (bad,) = engine.process(envelope, now=1795000000.0)
        assert bad.errors == ["custom_data.search_string: expected a positive amount, got '0'"], bad.errors
        event = dict(good.event, user_data={"em": good.event["user_data"]["em"], "work_email": ["x"]})
        assert contract.rule_errors(event, now=1795000000.0)[0].startswith("user_data.work_email[0]: expected a SHA")
        print("ok")
    ''')
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "ok", run.stderr[-2000:]
