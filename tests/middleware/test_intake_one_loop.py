"""The intake's one loop over a request's events keeps the two rules by which a visitor's own request
and a server source's batch differ, and writes one trace entry per request (MemoryObserver)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from mw_support import BROWSER, StubEngine, wrap

from pinsignal import MemorySink
from pinsignal.collector.intake import VisitorRequest
from pinsignal.pipeline import Produced, RequestContext


class TwoPipelines(StubEngine):
    """Two pipelines match every event: one makes a valid page visit, the other an invalid checkout."""

    def process(self, envelope: Mapping[str, Any], context: RequestContext) -> list[Produced]:
        self.contexts.append(context)
        visit = {"event_name": "page_visit", "event_id": envelope["message_id"]}
        checkout = {"event_name": "checkout", "event_id": envelope["message_id"]}
        return [Produced("visit", visit), Produced("checkout", checkout, ["value: must be a number"])]


def _event(message_id: str, **context: Any) -> dict[str, Any]:
    return {"type": "track", "event": "order_completed", "message_id": message_id, "properties": {},
            "context": {"page": {"url": "https://shop.example/"}, **context}}


@pytest.mark.anyio
@pytest.mark.parametrize("server", [False, True])
async def test_an_event_with_one_invalid_pipeline_is_rejected_and_only_a_browsers_valid_events_go(
        server: bool) -> None:
    sink = MemorySink()
    app = wrap(sink=sink, engine=TwoPipelines())
    visitor = VisitorRequest(ip="203.0.113.9", scheme="https", user_agent=BROWSER)
    raws = [_event("o-1", ip="198.51.100.7", userAgent=BROWSER),
            _event("o-2", ip="198.51.100.7", userAgent="Googlebot/2.1 (+http://www.google.com/bot.html)")]
    outcome = await app.intake.accept(raws, visitor, received_at=time.time(), source="server" if server else "browser",
                                      believe_context=server)
    # the browser's request is a browser's: o-2's context.userAgent is not believed, so it is no crawler
    assert [(r["id"], r["reasons"]) for r in outcome.rejected] == (
        [("o-1", ["checkout: value: must be a number"]),
         ("o-2", ["known crawler (context.userAgent); nothing is sent for crawlers"])] if server else
        [("o-1", ["checkout: value: must be a number"]), ("o-2", ["checkout: value: must be a number"])])
    assert [(e["event_name"], e["event_id"]) for e in sink.events] == (
        [] if server else [("page_visit", "o-1"), ("page_visit", "o-2")])
    assert sink.counters["rejected_invalid"] == (1 if server else 2)
    assert sink.counters["dropped_bot"] == (1 if server else 0)
    records = app.intake.observer.records  # type: ignore[attr-defined]
    assert {r["id"] for r in records} == {"1-0"}  # one trace entry for the request
    stages = [(r["message_id"], r["stage"], r.get("reason")) for r in records]
    # an event's stages in the order they happened: the refusal in the loop, the queued stage at the enqueue
    assert stages == [("o-1", "received", None), ("o-1", "refused", "invalid_event"),
                      ("o-1", "quarantined", "invalid_event"), *([] if server else [("o-1", "queued", None)]),
                      *([("o-2", "refused", "bot")] if server else
                        [("o-2", "received", None), ("o-2", "refused", "invalid_event"),
                         ("o-2", "quarantined", "invalid_event"), ("o-2", "queued", None)])]
    assert {r["source"] for r in records if r["stage"] == "received"} == {"server" if server else "browser"}
