from __future__ import annotations

from typing import Any

import pytest

from pinsignal.clientip import TrustedProxies


def scope(peer: str | None, *headers: tuple[bytes, bytes], scheme: str = "http") -> dict[str, Any]:
    return {"type": "http", "scheme": scheme, "client": (peer, 1234) if peer else None, "headers": list(headers)}


def test_untrusted_peer_headers_are_ignored() -> None:
    proxies = TrustedProxies(("127.0.0.1",))
    result = proxies.resolve(scope("203.0.113.9", (b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-proto", b"https")))
    assert result == ("203.0.113.9", "http")


def test_trusted_peer_forwarded_headers_are_used() -> None:
    proxies = TrustedProxies(("127.0.0.1",))
    result = proxies.resolve(scope("127.0.0.1", (b"x-forwarded-for", b"198.51.100.4"),
                                   (b"x-forwarded-proto", b"https")))
    assert result == ("198.51.100.4", "https")


@pytest.mark.parametrize(("chain", "client"), [
    # The client can write anything on the left; the rightmost untrusted hop is the real client.
    (b"6.6.6.6, 198.51.100.4", "198.51.100.4"),
    (b"198.51.100.4, 10.0.0.2", "198.51.100.4"),
    (b"10.0.0.3, 10.0.0.2", "10.0.0.3"),
    (b"not-an-ip", "10.0.0.1"),
    (b"2001:db8::1", "2001:db8::1"),
])
def test_forwarded_chain_with_a_trusted_network(chain: bytes, client: str) -> None:
    proxies = TrustedProxies(("10.0.0.0/8",))
    assert proxies.resolve(scope("10.0.0.1", (b"x-forwarded-for", chain)))[0] == client


def test_repeated_forwarded_for_headers_are_one_list() -> None:
    proxies = TrustedProxies(("127.0.0.1",))
    ip, _ = proxies.resolve(scope("127.0.0.1", (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.4")))
    assert ip == "198.51.100.4"


def test_localhost_name_mapped_ipv4_and_missing_client() -> None:
    proxies = TrustedProxies(("localhost",))
    assert proxies.trusts("127.0.0.1") and proxies.trusts("::1") and proxies.trusts("::ffff:127.0.0.1")
    assert not proxies.trusts("192.0.2.1")
    assert proxies.resolve(scope(None, scheme="https")) == (None, "https")
    assert proxies.resolve(scope("127.0.0.1", (b"x-forwarded-proto", b"gopher"))) == ("127.0.0.1", "http")
