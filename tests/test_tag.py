"""tag_call(): the Pinterest Tag's call for exactly the events a server-side track() sent."""

from __future__ import annotations

import json
import re

from pinsignal.tag import TagCall, tag_call, tag_parameters
from pinsignal.tracking import TrackResult

CHECKOUT = {
    "event_name": "checkout", "event_id": "order-1042", "action_source": "web", "event_time": 1,
    "user_data": {"em": ["a" * 64]},
    "custom_data": {"currency": "USD", "value": "72.39", "order_id": "1042", "num_items": 3,
                    "content_ids": ["sku-1"], "contents": [{"id": "sku-1", "item_price": "14.99", "quantity": 3,
                                                            "item_name": "Mug </script>"}]},
}


def calls(html: str) -> list[list[object]]:
    return [json.loads(f"[{args}]") for args in re.findall(r'pintrk\((".*?)\);', html)]


def test_the_call_carries_the_servers_event_id_and_the_tags_parameters() -> None:
    call = tag_call(TrackResult(event_id="order-1042", queued=True, events=[CHECKOUT]))
    assert isinstance(call, TagCall) and call.event_id == "order-1042" and call.__html__() == call
    assert call.startswith("<script>window.pintrk&&") and call.endswith("</script>")
    assert "</script>" not in call[len("<script>"):-len("</script>")]  # the product name cannot break out
    [[kind, name, parameters]] = calls(call)
    assert (kind, name) == ("track", "checkout")
    assert parameters == {"event_id": "order-1042", "value": 72.39, "currency": "USD", "order_id": "1042",
                          "order_quantity": 3, "line_items": [{"product_id": "sku-1", "product_price": 14.99,
                                                               "product_quantity": 3,
                                                               "product_name": "Mug </script>"}]}
    assert "user_data" not in call and "a" * 64 not in call  # match keys stay on the server


def test_one_call_per_event_and_none_when_nothing_was_sent() -> None:
    visit = {"event_name": "add_to_wishlist", "event_id": "e-1", "custom_data": {"value": "5"}}
    both = tag_call(TrackResult(event_id="e-1", queued=True, events=[visit, {**visit, "event_name": "custom"}]))
    assert [call[1] for call in calls(both)] == ["addtowishlist", "custom"]
    assert calls(both)[0][2] == {"event_id": "e-1", "value": 5}
    assert tag_call(TrackResult(event_id="e-2", reasons=["advertising consent was refused"])) == ""
    assert tag_call(TrackResult(event_id="e-2", queued=True)).event_id == "e-2"
    # A retry (already queued) still renders: Pinterest keeps one of the two.
    assert calls(tag_call(TrackResult(event_id="e-1", duplicate=True, events=[visit])))


def test_parameters_leave_out_what_is_missing() -> None:
    assert tag_parameters({"event_id": "x", "event_name": "lead"}) == {"event_id": "x"}
    assert tag_parameters({"event_id": "x", "custom_data": {"value": "not a number", "search_string": "linen"}}) == {
        "event_id": "x", "search_query": "linen"}
