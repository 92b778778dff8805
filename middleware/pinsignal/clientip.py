"""Who is asking, and over which scheme: the ASGI peer, or what a trusted proxy says it saw.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the TCP peer is one of
``PINSIGNAL_TRUSTED_PROXIES`` (addresses, networks such as ``10.0.0.0/8``, or ``localhost``);
anyone else could write any address into them.

    proxies = TrustedProxies(("127.0.0.1", "10.0.0.0/8"))
    ip, scheme = proxies.resolve(scope)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

__all__ = ["TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_LOCALHOST = ("127.0.0.0/8", "::1/128")
_CACHE_LIMIT = 4096


class TrustedProxies:
    """Decides whether a peer's forwarding headers are believed, and resolves client IP and scheme."""

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[_Network] = []
        names: set[str] = set()
        for entry in entries:
            if entry == "*":
                names.add("*")
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry.lower() == "localhost":
                    networks.extend(ipaddress.ip_network(net) for net in _LOCALHOST)
                names.add(entry.lower())
        self._networks = tuple(networks)
        self._names = frozenset(names)
        self._trust_all = "*" in names
        # Peers repeat (a load balancer has a handful of addresses): remember each verdict.
        self._verdicts: dict[str, bool] = {}

    def trusts(self, peer: str) -> bool:
        """Whether ``peer`` (an IP address or unix socket name) is a trusted proxy."""
        verdict = self._verdicts.get(peer)
        if verdict is None:
            verdict = self._decide(peer)
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[peer] = verdict
        return verdict

    def _decide(self, peer: str) -> bool:
        if self._trust_all or peer.lower() in self._names:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def resolve(self, scope: Scope) -> tuple[str | None, str]:
        """The client's IP address (``None`` when unknown) and the scheme the client used."""
        client = scope.get("client")
        peer = client[0] if client else None
        scheme: str = scope.get("scheme", "http")
        if peer is None or not self.trusts(peer):
            return peer, scheme
        forwarded_for: bytes | None = None
        forwarded_proto: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                # Repeated headers are one list, in order (RFC 9110 section 5.3).
                forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
        if forwarded_proto is not None:
            scheme = _proto(forwarded_proto, scheme)
        if forwarded_for is not None:
            peer = self._client_from_chain(forwarded_for.decode("latin-1"), peer)
        return peer, scheme

    def scheme(self, scope: Scope, forwarded_proto: bytes | None) -> str:
        """The client's scheme, given the request's ``X-Forwarded-Proto`` value (if the caller found one)."""
        scheme: str = scope.get("scheme", "http")
        if forwarded_proto is None:
            return scheme
        client = scope.get("client")
        return _proto(forwarded_proto, scheme) if client and self.trusts(client[0]) else scheme

    def _client_from_chain(self, chain: str, peer: str) -> str:
        # Walk from the nearest hop back: the first address that is not one of our proxies is the
        # client; anything to its left was written by the client and cannot be believed.
        hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return _valid_ip(hop) or peer
        first = _valid_ip(hops[0]) if hops else None
        return first or peer


def _valid_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _proto(forwarded_proto: bytes, default: str) -> str:
    # The nearest proxy appends last: its word is the one that counts.
    proto = forwarded_proto.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
    return proto if proto in ("http", "https") else default
