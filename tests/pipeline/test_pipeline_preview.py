"""``pinsignal.pipeline.preview`` called directly: the rules behind ``pinsignal pipelines preview``."""

from __future__ import annotations

import pytest

from pinsignal.config import Config
from pinsignal.pipeline import Engine, RequestContext, load_pipelines
from pinsignal.pipeline.preview import PreviewError, preview, read_events

ORDER = {
    "type": "track", "event": "Order Completed", "messageId": "order-1", "timestamp": "2025-01-01T12:00:00Z",
    "properties": {"revenue": 10, "currency": "USD"}, "context": {"ip": "203.0.113.9", "userAgent": "UA"},
}
ENGINE = Engine(load_pipelines(Config().pipeline_paths))


@pytest.mark.parametrize("document", [b'{"type": "page"}', b'[{"type": "page"}]', b'{"batch": [{"type": "page"}]}'])
def test_read_events_takes_one_event_a_list_or_a_batch(document: bytes) -> None:
    assert read_events(document, name="f.json") == [{"type": "page"}]


def test_read_events_refuses_nothing_and_non_json() -> None:
    with pytest.raises(PreviewError, match=r"^f.json: no events in the file$"):
        read_events(b'{"batch": []}', name="f.json")
    with pytest.raises(PreviewError, match=r"^f.json: not valid JSON: "):
        read_events(b"{", name="f.json")


def test_the_event_is_judged_at_its_own_time_unless_told_otherwise() -> None:
    (produced,) = preview(ENGINE, [ORDER])
    assert produced.pipeline == "checkout" and produced.valid
    assert produced.event["event_time"] == 1735732800
    (late,) = preview(ENGINE, [ORDER], now=1735732800 + 30 * 86400)
    assert not late.valid and "days old" in late.errors[0]
    (now,) = preview(ENGINE, [ORDER], now="clock")
    assert not now.valid


def test_the_request_s_click_id_reaches_the_event() -> None:
    (produced,) = preview(ENGINE, [ORDER], RequestContext(epik="from-request"))
    assert produced.event["user_data"]["click_id"] == "from-request"


def test_a_bad_event_in_a_batch_is_named_by_its_index() -> None:
    with pytest.raises(PreviewError, match=r"^f.json\[1\]: not a valid event: type: 'screen' is not supported"):
        preview(ENGINE, [ORDER, {"type": "screen"}], name="f.json")
