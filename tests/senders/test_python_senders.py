"""segment-analytics-python and rudder-sdk-python, at their default settings, against pinsignal's /_ps/v1.

Each library is only told its write key and the host; it batches, gzips (RudderStack does by
default) and authenticates as it always does. The events must reach the sandbox as Pinterest
checkouts with the shopper's keys hashed, the order, the click id and the shopper's IP and user
agent (not the library's), and each library must count them as delivered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from senders_support import WRITE_KEY, check_checkout, order_properties, stack, visitor_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _send(client: Any, orders: list[str]) -> None:
    for order_id in orders:
        client.identify("u-42", {"email": " Jane.Doe@Example.com "})
        client.track("u-42", "Order Completed", order_properties(order_id), context=visitor_context(order_id))
    client.flush()
    client.shutdown()


def test_segment_analytics_python(sandbox_server: Any, redis_url: str, tmp_path: Path) -> None:
    from segment.analytics import Client

    errors: list[Any] = []
    with stack(sandbox_server, redis_url, tmp_path) as site:
        client = Client(WRITE_KEY, host=f"{site.url}/_ps", on_error=lambda error, batch: errors.append(error))
        orders = [f"seg-{n}" for n in range(120)]  # more than one upload of 100
        _send(client, orders)
        checkouts = site.checkouts(len(orders))
    assert errors == []
    assert sorted(checkouts) == sorted(orders)
    for order_id, event in checkouts.items():
        check_checkout(event, order_id)


def test_rudder_sdk_python_gzips_and_takes_only_200(sandbox_server: Any, redis_url: str, tmp_path: Path) -> None:
    from rudderstack.analytics import Client

    errors: list[Any] = []
    with stack(sandbox_server, redis_url, tmp_path) as site:
        client = Client(WRITE_KEY, host=f"{site.url}/_ps", on_error=lambda error, batch: errors.append(error))
        assert client.gzip is True  # the default this test is about
        orders = [f"rud-{n}" for n in range(30)]
        _send(client, orders)
        checkouts = site.checkouts(len(orders))
    assert errors == []
    assert sorted(checkouts) == sorted(orders)
    for order_id, event in checkouts.items():
        check_checkout(event, order_id)


def test_a_wrong_key_is_reported_by_the_library_and_nothing_is_sent(sandbox_server: Any, redis_url: str,
                                                                     tmp_path: Path) -> None:
    from rudderstack.analytics import Client

    errors: list[Any] = []
    with stack(sandbox_server, redis_url, tmp_path) as site:
        client = Client("not-the-key-0123456789", host=f"{site.url}/_ps", max_retries=0,
                        on_error=lambda error, batch: errors.append(error))
        _send(client, ["bad-1"])
    assert len(errors) == 1
    assert errors[0].status == 401 and errors[0].code == "unauthorized"
    assert sandbox_server.events() == []
