"""Header hygiene between the visitor and the upstream: hop-by-hop, Host, X-Forwarded-*, Location.

Headers stay raw ``(name, value)`` byte pairs in their original order from end to end, so repeated
fields (several ``Set-Cookie``) are never folded into one (RFC 6265bis forbids it for
intermediaries; see pitfall P7 in ``reference/style-study.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pinsignal.clientip import TrustedProxies

__all__ = [
    "CLIENT_IP_HEADERS", "HOP_BY_HOP", "REQUEST_SPECIAL", "RawHeaders", "forwarded_request_headers",
    "forwarding_headers", "is_client_ip_header", "map_location", "split_request_headers", "strip_hop_by_hop",
]

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1, plus the legacy Proxy-Connection. ``Expect`` is handled by the server in
# front (uvicorn answers 100-continue itself), so it is not passed on either. Every ``Proxy*`` field
# is dropped too: they concern this hop, and a ``Proxy:`` request header is the httpoxy attack.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"proxy-authenticate", b"proxy-authorization", b"expect",
})
# What frameworks and servers take, unchecked, for the client's address, scheme, port or URL (Flask's
# and Django's proxy fixes, Rails, Express, Spring, Symfony, IIS...). Each is passed on only from a
# trusted proxy (PINSIGNAL_TRUSTED_PROXIES); from anyone else it is dropped, since a visitor could
# write anything into it. Every ``X-Forwarded-*`` field counts too (``is_client_ip_header``).
CLIENT_IP_HEADERS = frozenset({
    b"forwarded", b"x-forwarded", b"x-real-ip", b"true-client-ip", b"cf-connecting-ip", b"x-client-ip",
    b"client-ip", b"x-cluster-client-ip", b"fastly-client-ip", b"x-original-forwarded-for", b"front-end-https",
    b"x-original-url", b"x-rewrite-url",
})
_X_FORWARDED = b"x-forwarded-"
# The visitor's headers that are not passed on as they are (plus every ``Proxy*`` and ``X-Forwarded-*``).
REQUEST_SPECIAL = HOP_BY_HOP | CLIENT_IP_HEADERS | {b"host"}


def is_client_ip_header(name: bytes) -> bool:
    """Whether a (lowercased) request header says who the client is: ``CLIENT_IP_HEADERS`` or ``X-Forwarded-*``."""
    return name in CLIENT_IP_HEADERS or name.startswith(_X_FORWARDED)


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]], extra: frozenset[bytes] = frozenset()) -> RawHeaders:
    """Drop hop-by-hop fields and every field that ``Connection`` names; keep the rest in order."""
    out: RawHeaders = []
    named: set[bytes] | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in extra or lowered.startswith(b"proxy"):
            if lowered == b"connection":
                named = named or set()
                named.update(token.strip().lower() for token in value.split(b","))
            continue
        out.append((name, value))
    if named and not named <= HOP_BY_HOP:
        out = [pair for pair in out if pair[0].lower() not in named]
    return out


def split_request_headers(headers: Iterable[tuple[bytes, bytes]], special: frozenset[bytes]
                          ) -> tuple[RawHeaders, RawHeaders]:
    """The visitor's headers in two groups, each in order: the ones to pass on, and the ``special``
    (plus every ``Proxy*`` and ``X-Forwarded-*``) that need a decision. Fields that ``Connection`` names are dropped.

    Names are compared as ASGI servers deliver them, lowercased. Pairs are passed on as they are
    (no copies), so a request with nothing special costs one loop.
    """
    kept: RawHeaders = []
    noted: RawHeaders = []
    for pair in headers:
        name = pair[0]
        if name in special or name.startswith((b"proxy", _X_FORWARDED)):
            noted.append(pair)
        else:
            kept.append(pair)
    for name, value in noted:
        if name == b"connection":
            named = {token.strip().lower() for token in value.split(b",")}
            if not named <= HOP_BY_HOP:
                kept = [pair for pair in kept if pair[0] not in named]
    return kept, noted


def forwarding_headers(noted: Iterable[tuple[bytes, bytes]], *, client: tuple[str, int] | None, scheme: str,
                       host_mode: str, upstream_host: bytes, trusted: TrustedProxies) -> tuple[bytes, RawHeaders]:
    """``Host`` and the ``X-Forwarded-*`` headers, from the visitor's own; the other client-IP headers
    (``CLIENT_IP_HEADERS``, every other ``X-Forwarded-*``) pass only from a trusted proxy.

    An incoming ``X-Forwarded-For`` chain is extended only when the peer is a trusted proxy; from
    anyone else it is replaced, since a visitor could write any address into it.
    """
    host: bytes | None = None
    chain: list[bytes] = []
    proto: bytes | None = None
    forwarded_host: bytes | None = None
    forwarded: RawHeaders = []
    for name, value in noted:
        if name == b"host":
            host = value
        elif name == b"x-forwarded-for":
            chain.append(value)
        elif name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-host":
            forwarded_host = value
        elif is_client_ip_header(name):
            forwarded.append((name, value))
    peer = client[0] if client else None
    believed = bool(chain or proto or forwarded_host or forwarded) and peer is not None and trusted.trusts(peer)
    peer_bytes = peer.encode("latin-1") if peer else b"unknown"
    out: RawHeaders = [
        (b"x-forwarded-for", b", ".join([*chain, peer_bytes]) if believed and chain else peer_bytes),
        (b"x-forwarded-proto", proto if believed and proto else b"https" if scheme in ("https", "wss") else b"http"),
    ]
    if believed and forwarded_host:
        out.append((b"x-forwarded-host", forwarded_host))
    elif host:
        out.append((b"x-forwarded-host", host))
    if believed:
        out.extend(forwarded)
    return ((host or upstream_host) if host_mode == "keep" else upstream_host), out


def forwarded_request_headers(headers: Sequence[tuple[bytes, bytes]], *, client: tuple[str, int] | None,
                              scheme: str, host_mode: str, upstream_host: bytes,
                              trusted: TrustedProxies, extra_drop: frozenset[bytes] = frozenset()) -> RawHeaders:
    """The headers sent upstream: hop-by-hop stripped, ``Host`` kept or rewritten, ``X-Forwarded-*`` set."""
    kept, noted = split_request_headers(headers, REQUEST_SPECIAL | extra_drop)
    host, forwarding = forwarding_headers(noted, client=client, scheme=scheme, host_mode=host_mode,
                                          upstream_host=upstream_host, trusted=trusted)
    return [(b"host", host), *kept, *forwarding]


def map_location(headers: RawHeaders, *, upstream_origin: bytes, public_origin: bytes) -> RawHeaders:
    """``Location`` headers pointing at ``upstream_origin`` mapped back to ``public_origin``.

    With ``--host-header upstream`` the upstream believes it is ``upstream_origin`` and redirects
    there; like nginx's default ``proxy_redirect``, such a ``Location`` is rewritten to the origin the
    visitor used.
    """
    out = list(headers)
    for index, (name, value) in enumerate(out):
        if name.lower() == b"location" and value.startswith(upstream_origin):
            rest = value[len(upstream_origin):]
            if not rest or rest[:1] in (b"/", b"?", b"#"):
                out[index] = (name, public_origin + rest)
    return out
