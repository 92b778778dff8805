"""``guard``: the head checks every request passes, and the per-address slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pinsignal.proxy.guard import ClientSlots, head_problem

pytestmark = pytest.mark.anyio


def scope(*headers: tuple[bytes, bytes], version: str = "1.1", path: bytes = b"/") -> dict[str, Any]:
    return {"type": "http", "http_version": version, "raw_path": path, "query_string": b"", "headers": list(headers)}


@pytest.mark.parametrize(("request_scope", "problem"), [
    (scope((b"host", b"shop.example")), None),
    (scope((b"host", b"shop.example:8443")), None),
    (scope((b"host", b"[2001:db8::1]:80")), None),
    (scope((b"host", b"")), None),  # RFC 9110 allows an empty Host
    (scope(), 400),
    (scope(version="1.0"), None),
    (scope((b"host", b"a"), (b"host", b"a")), 400),
    (scope((b"host", b"a b")), 400),
    (scope((b"host", b"a/b")), 400),
    (scope((b"host", b"user@a")), 400),
    (scope((b"host", b"a:port")), 400),
    (scope((b"host", b"a"), (b"x-pad", b"p" * 5000)), 431),
    (scope((b"host", b"a"), path=b"/" + b"p" * 5000), 431),
])
def test_head_problem(request_scope: dict[str, Any], problem: int | None) -> None:
    assert head_problem(request_scope, 4096) == problem


@pytest.mark.parametrize("address", ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::9"])
def test_an_ipv6_address_counts_by_its_64(address: str) -> None:
    assert ClientSlots.key(address) == "2001:0db8:0001:0002::/64"
    assert ClientSlots.key("192.0.2.1") == "192.0.2.1" and ClientSlots.key(None) == "unknown"


async def test_slots_wait_hand_over_time_out_and_forget_idle_addresses() -> None:
    slots = ClientSlots(2)
    assert await slots.acquire("a", 1) and await slots.acquire("a", 1)
    assert await slots.acquire("b", 1)  # another address is not held up
    assert not await slots.acquire("a", 0.05)  # both of a's slots are taken: a timeout
    waiting = asyncio.ensure_future(slots.acquire("a", 5))
    await asyncio.sleep(0.01)
    slots.release("a")
    assert await waiting  # the freed slot went to the one waiting
    cancelled = asyncio.ensure_future(slots.acquire("a", 5))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    for key in ("a", "a", "b"):
        slots.release(key)
    assert slots.held("a") == 0 and slots.held("b") == 0
