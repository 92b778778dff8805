"""Tag companion mode: ``t.js`` and the rules it is served with, made from the loaded pipelines.

The rules' behaviour in a browser (one Tag call per Pinterest event, equal event ids) is tested in
Chromium by ``tests/browser/test_tag_companion.py``; here: what the rules say, and how t.js is served.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
from mw_support import SECRET, client

from pinsignal import Config, MemorySink, PinSignalMiddleware
from pinsignal.collector.companion import tag_name, tag_rules
from pinsignal.pipeline import Engine, load_pipeline_text, load_pipelines

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = load_pipelines(ROOT / "pipelines")

pytestmark = pytest.mark.anyio


def rule_for(name: str) -> list[object]:
    pipeline = next(pipeline for pipeline in SHIPPED if pipeline.name == name)
    [rule] = tag_rules([pipeline])
    return rule


def test_every_shipped_pipeline_has_a_rule_named_as_the_tag_names_it() -> None:
    rules = tag_rules(SHIPPED)
    assert len(rules) == len([pipeline for pipeline in SHIPPED if pipeline.enabled])
    names = {rule[2] for rule in rules}
    # The Tag's own event names (Pinterest's list), all reached from the shipped pipelines.
    assert {"pagevisit", "addtocart", "checkout", "signup", "lead", "search", "viewcategory", "watchvideo",
            "custom"} <= names
    assert tag_name("add_to_wishlist") == "addtowishlist"


def test_rules_follow_the_pipelines_not_a_table() -> None:
    assert rule_for("page_visit")[:4] == [["page"], [], "pagevisit", ["message_id"]]
    events, conditions, name, ids, parameters = rule_for("checkout")
    assert (events, conditions, name, ids) == (["track"], [["event", "equals", "order_completed"]], "checkout",
                                               ["message_id"])
    by_name = {parameter[0]: parameter[1:] for parameter in parameters}  # type: ignore[index]
    assert by_name["value"] == [["properties.revenue", "properties.subtotal", "properties.total",
                                 "properties.value"], "", None, None]
    assert by_name["currency"] == [["properties.currency", "properties.products.0.currency"], "", None, "USD"]
    assert by_name["order_quantity"] == [["properties.products"], "sum", "quantity", None]
    assert by_name["order_id"] == [["properties.order_id"], "", None, None]
    kind, fields = by_name["line_items"][1:3]
    assert kind == "contents"
    assert ["product_id", ["product_id", "sku", "id"]] in fields and ["product_price", ["price"]] in fields
    assert rule_for("signup")[1] == [["event", "in", ["signed_up", "account_created"]]]
    assert {parameter[0] for parameter in rule_for("search")[4]} == {"search_query"}  # type: ignore[union-attr]


PIPELINE = """name: {name}
trigger:
  event: track
  conditions: [{{field: event, operator: equals, value: thing_done}}]
transform:
  static: [{{target: event_name, value: lead}}, {{target: action_source, value: web}}]
  mapping: [{{source: timestamp, target: event_time, transform: unix_seconds}}]
  dedup: [{dedup}]
  context: [{{source: context.ip, target: user_data.client_ip_address}},
            {{source: context.userAgent, target: user_data.client_user_agent}}]
  custom_data: [{{source: properties.total, target: value, transform: {transform}}}]
"""


def test_a_pipeline_whose_event_id_the_browser_cannot_repeat_gets_no_rule(caplog: pytest.LogCaptureFixture) -> None:
    plain = load_pipeline_text(PIPELINE.format(name="plain", dedup="{source: message_id, target: event_id}",
                                               transform="to_money_string"), "plain.yaml")
    hashed = load_pipeline_text(PIPELINE.format(name="hashed", transform="to_money_string",
                                                dedup="{source: message_id, target: event_id, transform: sha256}"),
                                "hashed.yaml")
    odd = load_pipeline_text(PIPELINE.format(name="odd", dedup="{source: message_id, target: event_id}",
                                             transform="lowercase"), "odd.yaml")
    with caplog.at_level(logging.INFO, logger="pinsignal.collector"):
        rules = tag_rules([plain, hashed, odd])
    assert [rule[2] for rule in rules] == ["lead", "lead"]
    assert rules[0][4] == [["value", ["properties.total"], "", None, None]]
    assert rules[1][4] == []  # a transform t.js does not repeat: the parameter is left out, the event kept
    assert "pipeline 'hashed' does not take event_id straight from the event" in caplog.text


async def test_t_js_is_served_with_the_rules_of_the_loaded_pipelines() -> None:
    config = Config(secret=SECRET)
    app = PinSignalMiddleware(lambda scope, receive, send: None, config=config, sink=MemorySink(),  # type: ignore[arg-type]
                              engine=Engine(SHIPPED))
    async with client(app) as http:
        plain = await http.get("/_ps/t.js", headers={"accept-encoding": "identity"})
        zipped = await http.get("/_ps/t.js", headers={"accept-encoding": "gzip"})
        again = await http.get("/_ps/t.js", headers={"if-none-match": plain.headers["etag"]})
        post = await http.post("/_ps/t.js")
        script = (await http.get("/_ps/c.js")).text
    assert plain.status_code == 200 and plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["cache-control"] == "public, max-age=300"
    assert '"pagevisit"' in plain.text and '"addtocart"' in plain.text and "__MAP__" not in plain.text
    assert gzip.decompress(app.companion.gzipped) == plain.content == zipped.content
    assert int(zipped.headers["content-length"]) <= 4096
    assert again.status_code == 304 and post.status_code == 405
    assert "http://" not in plain.text and "https://" not in plain.text
    # c.js loads it only when its own script tag says data-tag.
    assert '"tag"in a' in script and 'u+"t.js"' in script
