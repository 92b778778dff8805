from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

EM = "a" * 64  # any 64-character lowercase hex digest passes the contract

MakeEvent = Callable[..., dict[str, Any]]


@pytest.fixture
def make_event() -> MakeEvent:
    """Build a valid v5 event; keyword arguments replace top-level fields (``user_data`` too)."""
    counter = iter(range(1, 10**9))

    def build(**fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_name": "checkout",
            "action_source": "web",
            "event_time": int(time.time()),
            "event_id": f"evt-{next(counter)}",
            "event_source_url": "https://shop.example/checkout",
            "user_data": {
                "em": [EM],
                "external_id": ["b" * 64],
                "click_id": "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0akdU",
                "client_ip_address": "203.0.113.9",
                "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            },
            "custom_data": {"currency": "USD", "value": "72.39", "num_items": 3, "order_id": "order-1"},
        }
        event.update(fields)
        return event

    return build
