"""Loading pipeline files: typed objects, and every mistake as ``file:line: message``."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from pinsignal.errors import PipelineLoadError
from pinsignal.pipeline import load_pipeline_file, load_pipeline_text, load_pipelines, pipeline_files
from pinsignal.pipeline.spec import Condition, Enrichment, Output, Step, TransformCall

DATA = Path(__file__).parent / "data"
# sha256 of ../shared/examples/pinterest-checkout.yaml, the product brief's example (kept unchanged)
BRIEF_SHA256 = "504810a565af756e808c9a911169cafc5c0561d845c807e724cc90362e36b810"

MINIMAL = """\
name: minimal
trigger:
  event: track
transform:
  static:
    - {target: event_name, value: lead}
    - {target: action_source, value: web}
  mapping:
    - {source: timestamp, target: event_time, transform: unix_seconds}
  dedup:
    - {source: message_id, target: event_id}
"""


def errors_of(text: str, file: str = "p.yaml") -> list[str]:
    with pytest.raises(PipelineLoadError) as caught:
        load_pipeline_text(textwrap.dedent(text), file)
    return caught.value.errors


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_product_brief_example_loads_into_typed_objects() -> None:
    pipeline = load_pipeline_file(DATA / "pinterest-checkout.yaml")
    assert pipeline.name == "pinterest_checkout"
    assert pipeline.line == 2 and pipeline.file.endswith("pinterest-checkout.yaml")
    assert pipeline.events == ("track",)
    assert pipeline.conditions == (Condition(field="event", operator="equals", value="order_completed", line=7),)
    assert pipeline.output == Output(endpoint="https://api.pinterest.com/v5/ad_accounts/{ad_account_id}/events")
    assert pipeline.cookie_names == frozenset({"_epik"})
    targets = [step.target for step in pipeline.steps]
    assert targets == [
        "event_name", "action_source", "event_time", "event_source_url", "event_id", "user_data.client_ip_address",
        "user_data.client_user_agent", "user_data.em", "user_data.ph", "user_data.click_id",
        "user_data.external_id", "custom_data.currency", "custom_data.value", "custom_data.content_ids",
        "custom_data.num_items",
    ]
    pluck = pipeline.steps[13]
    assert isinstance(pluck, Step)
    assert pluck.transforms == (TransformCall(name="pluck", params={"field": "product_id"}, line=65),)
    currency = pipeline.steps[11]
    assert isinstance(currency, Step) and currency.has_default and currency.default == "USD"
    click = pipeline.steps[9]
    assert isinstance(click, Enrichment) and click.type == "click_id" and click.cookies == ("_epik",)
    assert click.param == "epik" and click.line == 47


def test_minimal_pipeline_and_defaults() -> None:
    pipeline = load_pipeline_text(MINIMAL)
    assert pipeline.output.validate is True and pipeline.enabled and pipeline.conditions == ()


@pytest.mark.parametrize(("text", "expected"), [
    ("", ["p.yaml:1: the file is empty; a pipeline needs name, trigger and transform"]),
    ("- a\n- b\n", ["p.yaml:1: a pipeline file must be a mapping with name, trigger and transform, got a list"]),
    ("name: [unclosed\n", ["p.yaml:2: invalid YAML: "]),
    ("name: a\nname: b\n", ["p.yaml:2: duplicate key 'name' (first at line 1)"]),
    ("a: 1\n---\nb: 2\n", ["p.yaml:2: invalid YAML: "]),
    ("? [a]\n: 1\n", ["p.yaml:1: a mapping key must be a plain value, not a list or mapping"]),
])
def test_unreadable_yaml(text: str, expected: list[str]) -> None:
    errors = errors_of(text)
    assert len(errors) == len(expected)
    for error, start in zip(errors, expected, strict=True):
        # libyaml and pure-Python PyYAML word syntax errors differently; the prefix is ours.
        assert error.startswith(start) if start.endswith(": ") else error == start


def test_unknown_keys_sections_operators_transforms_and_targets_get_suggestions() -> None:
    text = """\
        name: typos
        trigers: {}
        trigger:
          event: trak
          conditions:
            - field: event
              operator: equal
              value: order_completed
        transform:
          statics: []
          static:
            - {target: event_name, value: chekout}
            - {target: action_source, value: web}
          mapping:
            - {source: timestamp, target: event_time, transform: unix_second}
            - {source: x, target: event_sourceurl}
          dedup:
            - {source: message_id, target: event_id, defualt: x}
          custom_data:
            - {source: properties.revenue, target: valeu}
            - {source: properties.products, target: content_ids, transform: pluck, feild: product_id}
        output:
          validated: true
        """
    assert errors_of(text) == [
        "p.yaml:2: unknown key 'trigers' in pipeline; did you mean 'trigger'?",
        "p.yaml:4: trigger.event 'trak' is not an event type; did you mean 'track'?",
        "p.yaml:7: unknown operator 'equal'; did you mean 'equals'?",
        "p.yaml:10: unknown section 'statics' in transform; did you mean 'static'?",
        "p.yaml:15: unknown transform 'unix_second'; did you mean 'unix_seconds'?",
        "p.yaml:16: unknown target 'event_sourceurl': not a field of a Pinterest v5 event; "
        "did you mean 'event_source_url'?",
        "p.yaml:18: unknown key 'defualt' in a transform.dedup item; did you mean 'default'?",
        "p.yaml:20: unknown target 'valeu': not a field of a Pinterest v5 event; did you mean 'custom_data.value'?",
        "p.yaml:21: transform pluck needs 'field' (the (dotted) field to take from each item)",
        "p.yaml:21: unknown key 'feild' in a transform.custom_data item; did you mean 'field'?",
        "p.yaml:12: event_name 'chekout' is not a Pinterest event name; did you mean 'checkout'?",
        "p.yaml:23: unknown key 'validated' in output; did you mean 'validate'?",
    ]


def test_hashing_rules_are_enforced_at_load_time() -> None:
    text = MINIMAL + """\
  user_data:
    - {source: traits.email, target: em}
    - {source: context.ip, target: client_ip_address, transform: sha256}
    - {source: traits.email, target: em, transform: [normalised_sha256, lowercase]}
  custom_data:
    - {source: properties.order_id, target: order_id, transform: normalised_sha256}
  enrichments:
    - {type: click_id, target: user_data.em}
    - {type: identity, transform: lowercase}
    - {type: cookie}
"""
    assert errors_of(text) == [
        "p.yaml:13: user_data.em holds SHA-256 digests; add transform: normalised_sha256",
        "p.yaml:14: user_data.client_ip_address is never hashed; remove the hashing transform",
        "p.yaml:15: hashing must be the last transform for user_data.em, not 'lowercase'",
        "p.yaml:19: click_id goes to user_data.click_id, not 'user_data.em'",
        "p.yaml:20: user_data.external_id holds SHA-256 digests; add transform: normalised_sha256",
        "p.yaml:21: unknown enrichment type 'cookie'; use click_id or identity",
        "p.yaml:17: transform normalised_sha256 normalises a user_data match key (em, ph, fn, ...); "
        "'custom_data.order_id' is not one (use sha256 to hash as-is)",
    ]


@pytest.mark.parametrize(("condition", "message"), [
    ("{field: event, operator: in, value: checkout}", "p.yaml:5: operator in needs a list value, got 'checkout'"),
    ("{field: properties.total, operator: gt, value: '10'}", "p.yaml:5: operator gt needs a number, got '10'"),
    ("{field: event, operator: exists, value: true}", "p.yaml:5: operator exists takes no value"),
    ("{field: event, operator: equals}", "p.yaml:5: operator equals needs a value"),
    ("{field: event, operator: matches, value: '(['}",
     "p.yaml:5: invalid regular expression '([': unterminated character set at position 1"),
    ("{field: 'a..b', operator: exists}", "p.yaml:5: condition field must be a dotted path like 'event', got 'a..b'"),
    ("{field: event, operator: starts_with, value: 3}", "p.yaml:5: operator starts_with needs a string, got 3"),
    ("[event, equals]", "p.yaml:5: a condition must be a mapping with field, operator and value, got a list"),
])
def test_condition_errors(condition: str, message: str) -> None:
    text = MINIMAL.replace("  event: track\n", f"  event: track\n  conditions:\n    - {condition}\n")
    assert errors_of(text) == [message]


def test_missing_required_parts() -> None:
    assert errors_of("name: x\n") == [
        "p.yaml:1: missing 'trigger' (e.g. trigger: {event: track, conditions: [...]})",
        "p.yaml:1: missing 'transform' (the sections that build the Pinterest event)",
    ]
    mapping = "  mapping:\n    - {source: timestamp, target: event_time, transform: unix_seconds}\n"
    no_time = MINIMAL.replace(mapping, "")
    assert errors_of(no_time) == [
        "p.yaml:4: nothing writes event_time, which Pinterest requires; add "
        "{source: timestamp, target: event_time, transform: unix_seconds} under mapping",
    ]
    assert errors_of(MINIMAL.replace("name: minimal", "name: 'no spaces allowed'")) == [
        "p.yaml:1: name must be letters, digits, '_', '.' or '-' (at most 100), got 'no spaces allowed'",
    ]


def test_static_values_for_hashed_targets_must_be_digests() -> None:
    text = MINIMAL.replace(
        "    - {target: action_source, value: web}\n",
        "    - {target: action_source, value: web}\n    - {target: user_data.em, value: jane@example.com}\n")
    assert errors_of(text) == [
        "p.yaml:8: user_data.em holds SHA-256 digests; a static value there must already be one (64 hex)",
    ]


def test_yaml_alias_bombs_are_refused() -> None:
    levels = ["&a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        levels.append(f"&{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    bomb = "    - {target: custom_data.np, value: [" + ", ".join(levels) + "]}\n"
    text = MINIMAL.replace("    - {target: action_source, value: web}\n",
                           "    - {target: action_source, value: web}\n" + bomb)
    assert errors_of(text) == ["p.yaml:8: the value is too large, too deep, or not plain JSON data"]


def test_files_that_are_not_text(tmp_path: Path) -> None:
    binary = write(tmp_path, "a.yaml", b"name: x\n\x00\x01\x02")
    latin1 = write(tmp_path, "b.yaml", "name: caf\u00e9\n".encode("latin-1"))
    huge = write(tmp_path, "c.yaml", b"#" * (1 << 20) + b"\n")
    control = write(tmp_path, "d.yaml", b"name: \x07bell\n")
    with pytest.raises(PipelineLoadError) as caught:
        load_pipelines(tmp_path)
    assert caught.value.errors == [
        f"{binary}:2: this is a binary file (it contains NUL bytes), not a YAML pipeline",
        f"{latin1}:1: not UTF-8 text (byte 0xe9 at offset 9); save the file as UTF-8",
        f"{huge}:1: the file is larger than 1024 KiB; is it really a pipeline?",
        f"{control}:1: invalid YAML: unacceptable character #x0007 (control characters are not allowed)",
    ]


def test_folders_files_duplicates_and_missing_paths(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", MINIMAL)
    second = write(tmp_path, "b.yml", MINIMAL)
    write(tmp_path, "notes.txt", "not a pipeline")
    assert pipeline_files([tmp_path]) == [first, second]
    with pytest.raises(PipelineLoadError) as caught:
        load_pipelines([tmp_path, tmp_path / "missing.yaml"])
    assert caught.value.errors == [
        f"{second}:1: duplicate pipeline name 'minimal' (already defined at {first}:1); names must be unique",
        f"{tmp_path / 'missing.yaml'}:1: no such file or folder",
    ]
    assert [p.name for p in load_pipelines(first)] == ["minimal"]
    assert load_pipelines([]) == []


def test_disabled_pipelines_load_but_do_not_run() -> None:
    from pinsignal.pipeline import Engine

    pipeline = load_pipeline_text("enabled: false\n" + MINIMAL)
    assert not pipeline.enabled
    assert Engine([pipeline]).process({"type": "track", "event": "x"}) == []


def test_the_kept_copy_of_the_brief_example_is_byte_identical() -> None:
    kept = (DATA / "pinterest-checkout.yaml").read_bytes()
    assert hashlib.sha256(kept).hexdigest() == BRIEF_SHA256
    shared = Path(__file__).resolve().parents[3] / "shared" / "examples" / "pinterest-checkout.yaml"
    if shared.is_file():  # beside the checkout on the machine it was written on
        assert shared.read_bytes() == kept
