"""deploy/'s Grafana dashboard and Prometheus rules: well-formed, and every metric they name is one
the worker exports (or a recording rule of the same file).

Neither tool's own validator is on PyPI (promtool ships with Prometheus, Grafana validates on
import), so this checks what would break silently: a renamed metric, a typo in a name, a panel or
rule missing what Grafana or Prometheus requires, an alert without its ``for`` and annotations, an
unbalanced expression.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pinsignal.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "pinsignal-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "pinsignal-dashboard.json"
NAME = re.compile(r"\b(pinsignal[:_][a-z0-9_:]+)\b")
DURATION = re.compile(r"^\d+[smhdw]$")
ALERTS = {"PinsignalAccountPaused", "PinsignalDeadLettersGrowing", "PinsignalDeliverySuccessLow",
          "PinsignalNoTraffic", "PinsignalOldestQueuedEventAge"}


def exported() -> set[str]:
    """Every series name the worker's registry can produce (counter, histogram and gauge suffixes)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update({family.name, f"{family.name}_total", f"{family.name}_created", f"{family.name}_bucket",
                      f"{family.name}_sum", f"{family.name}_count"})
        names.update(sample.name for sample in family.samples)
    return names


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    assert set(data) == {"groups"}
    return [rule for group in data["groups"] for rule in group["rules"]]


def balanced(expr: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return False
    return not any(depth.values())


def test_the_worker_exports_the_metrics_of_issue_16() -> None:
    names = exported()
    for name in ("pinsignal_event_warnings_total", "pinsignal_event_match_keys_total",
                 "pinsignal_events_refused_total", "pinsignal_oldest_event_age_seconds", "pinsignal_quarantined"):
        assert name in names


def test_rules_are_well_formed_and_cover_the_alerts_asked_for() -> None:
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        assert group["name"] and group["rules"]
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert ALERTS <= alerts
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule), rule
        assert isinstance(rule["expr"], str) and balanced(rule["expr"]), rule
        if "alert" in rule:
            assert DURATION.match(rule["for"]) and rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        else:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_every_metric_the_rules_name_exists() -> None:
    known = exported() | {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        for name in NAME.findall(rule["expr"]):
            assert name in known, f"{rule.get('alert') or rule.get('record')} names {name}, which nothing exports"


def test_dashboard_is_well_formed_and_names_only_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    known = exported()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    shown: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in ("timeseries", "stat", "table", "bargauge", "gauge")
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert balanced(target["expr"]) and target["refId"]
            for name in NAME.findall(target["expr"]):
                assert name in known, f"panel {panel['title']!r} names {name}, which the worker does not export"
                shown.add(name)
    for needed in ("pinsignal_account_paused", "pinsignal_dead_letters", "pinsignal_oldest_event_age_seconds",
                   "pinsignal_event_warnings_total", "pinsignal_event_match_keys_total",
                   "pinsignal_events_refused_total"):
        assert needed in shown


@pytest.mark.parametrize("broken", ["pinsignal_events_delivred_total", "pinsignal:nothing:rate5m"])
def test_the_name_check_can_fail(broken: str) -> None:
    known = exported() | {rule["record"] for rule in rules() if "record" in rule}
    assert broken not in known
