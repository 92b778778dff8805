"""trigger.source: a pipeline that takes events only from the server (or the browser), DESIGN 8.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinsignal.errors import PipelineLoadError
from pinsignal.pipeline import Engine, load_pipeline_text

BODY = """
name: locked
trigger:
  event: track
{source}  conditions:
    - {{field: event, operator: equals, value: order_completed}}
transform:
  static:
    - {{target: event_name, value: checkout}}
    - {{target: action_source, value: web}}
  mapping:
    - {{source: timestamp, target: event_time, transform: unix_seconds}}
  dedup:
    - {{source: message_id, target: event_id}}
"""
NOW = 1795000000.0


def envelope(source: str | None) -> dict[str, object]:
    event: dict[str, object] = {"type": "track", "event": "order_completed", "message_id": "m-1",
                                "timestamp": "2026-11-18T11:06:40Z", "properties": {}, "traits": {}, "context": {}}
    if source is not None:
        event["source"] = source
    return event


@pytest.mark.parametrize(("line", "taken"), [("", {"browser", "server"}), ("  source: server\n", {"server"}),
                                              ("  source: browser\n", {"browser"}),
                                              ("  source: [server, browser]\n", {"browser", "server"})])
def test_the_sources_a_pipeline_takes(line: str, taken: set[str]) -> None:
    engine = Engine([load_pipeline_text(BODY.format(source=line), "locked.yaml")])
    for source in ("browser", "server"):
        [produced] = engine.process(envelope(source), now=NOW)
        assert (produced.refused is None) == (source in taken), produced
        if source not in taken:
            assert produced.event == {} and produced.refused is not None
            assert f"only from a {' or '.join(sorted(taken))} source" in produced.refused
            assert f"came from a {source}" in produced.refused


def test_an_envelope_without_a_source_is_a_browsers() -> None:
    engine = Engine([load_pipeline_text(BODY.format(source="  source: server\n"), "locked.yaml")])
    [produced] = engine.process(envelope(None), now=NOW)
    assert produced.refused is not None and "send it from the site's server" in produced.refused


def test_a_pipeline_that_does_not_match_refuses_nothing() -> None:
    engine = Engine([load_pipeline_text(BODY.format(source="  source: server\n"), "locked.yaml")])
    assert engine.process({**envelope("browser"), "event": "product_added"}, now=NOW) == []


@pytest.mark.parametrize(("line", "message"), [
    ("  source: servers\n", "locked.yaml:5: trigger.source 'servers' is not a source; did you mean 'server'?"),
    ("  source: []\n", "locked.yaml:5: trigger.source is an empty list"),
    ("  source: cron\n", "locked.yaml:5: trigger.source 'cron' is not a source; use server, browser"),
])
def test_a_wrong_source_is_a_load_error_with_its_line(line: str, message: str) -> None:
    with pytest.raises(PipelineLoadError) as caught:
        load_pipeline_text(BODY.format(source=line), "locked.yaml")
    assert message in str(caught.value)


def test_preview_takes_the_source(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    (tmp_path / "locked.yaml").write_text(BODY.format(source="  source: server\n"))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(envelope(None)))
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "middleware")}

    def run(*extra: str) -> tuple[int, list[dict[str, object]]]:
        done = subprocess.run([sys.executable, "-m", "pinsignal", "pipelines", "preview", str(event), "--pipelines",
                               str(tmp_path / "locked.yaml"), *extra], capture_output=True, text=True, env=env)
        return done.returncode, json.loads(done.stdout)

    code, [browser] = run()
    assert code == 1 and browser["valid"] is False and "only from a server source" in browser["errors"][0]
    code, [server] = run("--source", "server")
    assert server["errors"] == ["user_data: required field is missing"]  # refused no more; the contract speaks
