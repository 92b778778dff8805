"""Generated hostile bodies against the real collector over HTTP: never a 5xx, always a sentence.

At least 10,000 requests in a normal run (``PINSIGNAL_FUZZ_CASES`` raises it): JSON of every
type where an event or a field is expected, huge strings, deep nesting, invalid UTF-8, bytes
that are not JSON, batches past the limit, every content type and every event route, Segment's
``/v1/*`` routes short and long included; bodies sent plain, gzipped, deflated, mislabelled, cut
short and as compression bombs; with no key, the right write key, wrong ones and broken
``Authorization`` headers. Each
hypothesis example sends ``PER_EXAMPLE`` bodies over one pooled keep-alive connection, which is
what keeps 10,000 real HTTP round trips within a few tens of seconds on two cores; requests go
out on ``CONNECTIONS`` keep-alive connections from a thread pool while hypothesis generates the next.
"""

from __future__ import annotations

import base64
import gzip
import os
import random
import re
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from security_support import WebProcess, rss_mb, start_web

from pinsignal.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration

CASES = int(os.environ.get("PINSIGNAL_FUZZ_CASES") or 10_000)
PER_EXAMPLE = 10
CONNECTIONS = 4
ROUTES = ["/_ps/e", "/_ps/v1/batch", "/_ps/v1/b", "/_ps/v1/t", "/_ps/v1/p", "/_ps/v1/i", "/_ps/v1/s", "/_ps/v1/g",
          "/_ps/v1/a", "/_ps/v1/track", "/_ps/v1/page", "/_ps/v1/identify", "/_ps/v1/screen", "/_ps/v1/group",
          "/_ps/v1/alias", "/_ps/consent", "/_ps/v1/import", "/_ps/v1/nope", "/_ps/nope"]
WRITE_KEY = "fuzz-write-key-0123456789abcdef"
# How a body goes out: as is, or compressed in the ways a client does (or gets wrong).
ENCODINGS = ["identity", "gzip", "deflate", "raw-deflate", "gzip-cut", "gzip-as-deflate", "mislabelled",
             "gzip-twice", "br", "bomb"]
AUTHORIZATIONS: list[bytes | None] = [
    None, b"Basic " + base64.b64encode(WRITE_KEY.encode() + b":"), b"Basic " + base64.b64encode(b"wrong-key-123:"),
    b"Basic " + base64.b64encode(b":"), b"Basic !!notbase64", b"Basic", b"Bearer " + WRITE_KEY.encode(),
    b"Basic " + base64.b64encode(b"\xff\xfe\x00:"), b"basic " + base64.b64encode(WRITE_KEY.encode()),
]
BOMB = gzip.compress(b"\x00" * (8 * 1024 * 1024), compresslevel=9)  # 8 MB of zeros in 8 KB


@pytest.fixture(scope="module")
def web(own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """The web process under attack, with one write key (a server source) configured."""
    yield from start_web(own_redis.url, tmp_path_factory.mktemp("web") / "web.log",
                         PINSIGNAL_WRITE_KEYS=f"fuzz:{WRITE_KEY}")


def encoded(body: bytes, encoding: str) -> tuple[bytes, bytes | None]:
    """The body as sent and its Content-Encoding header."""
    if encoding == "gzip":
        return gzip.compress(body), b"gzip"
    if encoding == "deflate":
        return zlib.compress(body), b"deflate"
    if encoding == "raw-deflate":
        squeezer = zlib.compressobj(wbits=-15)
        return squeezer.compress(body) + squeezer.flush(), b"deflate"
    if encoding == "gzip-cut":
        packed = gzip.compress(body)
        return packed[: max(1, len(packed) // 2)], b"gzip"
    if encoding == "gzip-as-deflate":
        return gzip.compress(body), b"deflate"
    if encoding == "mislabelled":
        return body, b"gzip"
    if encoding == "gzip-twice":
        return gzip.compress(gzip.compress(body)), b"gzip"
    if encoding == "br":
        return body, b"br"
    if encoding == "bomb":
        return BOMB, b"gzip"
    return body, None
CONTENT_TYPES = [b"application/json", b"text/plain", b"text/plain;charset=UTF-8", b"application/json; charset=latin1",
                 b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", b"", b"\xff\xfe",
                 b"APPLICATION/JSON", b"text/plain; charset=" + b"a" * 200]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                    st.text(max_size=40), st.sampled_from(["", " ", "\u0000", "\ud7ff", "1e999", "-0",
                                                           "order_completed", "track", "page", "identify"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                           max_leaves=8)
EVENT_KEYS = ["type", "event", "message_id", "messageId", "anonymous_id", "anonymousId", "user_id", "userId",
              "timestamp", "sent_at", "sentAt", "properties", "traits", "context", "name", "integrations"]


def _typed_event() -> st.SearchStrategy[dict[str, Any]]:
    """Event-shaped objects whose fields hold anything: the wrong-type cases."""
    plausible = {
        "type": st.sampled_from(["track", "page", "identify", "screen", "group", "alias"]),
        "event": st.sampled_from(["order_completed", "product_added", "", "x" * 300]),
        "message_id": st.text(min_size=1, max_size=64),
        "timestamp": st.sampled_from(["2026-11-29T12:00:00Z", "not a date", "1970-01-01T00:00:00Z",
                                      "9999-12-31T23:59:59Z", "2026-11-29T12:00:00+25:00"]),
        "properties": st.fixed_dictionaries({}, optional={
            "revenue": json_values, "currency": json_values, "products": json_values, "quantity": json_values}),
        "traits": st.fixed_dictionaries({}, optional={"email": json_values, "phone": json_values,
                                                      "first_name": json_values}),
        "context": st.fixed_dictionaries({}, optional={"page": json_values, "ip": json_values,
                                                       "userAgent": json_values, "consent": json_values}),
    }
    wild = {key: json_values for key in EVENT_KEYS}
    return st.one_of(
        st.fixed_dictionaries({}, optional=plausible),
        st.fixed_dictionaries({}, optional=wild),
        st.fixed_dictionaries(plausible),
    )


events = st.one_of(_typed_event(), json_values)
bodies = st.one_of(
    events.map(orjson.dumps),
    st.lists(events, max_size=8).map(lambda batch: orjson.dumps({"batch": batch})),
    st.tuples(st.lists(events, max_size=3), json_values).map(
        lambda pair: orjson.dumps({"batch": pair[0], "context": pair[1], "sent_at": pair[1]})),
    st.integers(95, 140).map(lambda n: orjson.dumps({"batch": [{"type": "track", "event": "x"}] * n})),
    st.integers(1, 5000).map(lambda n: orjson.dumps({"batch": [{}] * n})),  # thousands of events
    st.integers(60_000, 70_000).map(lambda n: orjson.dumps({"type": "track", "event": "a" * n})),  # huge strings
    st.integers(500, 5000).map(lambda depth: b'{"type":"track","properties":' + b"[" * depth + b"]" * depth + b"}"),
    st.binary(max_size=200),  # invalid UTF-8, NUL bytes, anything
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b'{"type":"track","event":"\xff\xfe"}', b'{"event":"\xed\xa0\x80"}', b"\xef\xbb\xbf{}",
                     b'{"a":1}{"b":2}', b"{{{{{{{{",
                     b'{"properties":{"revenue":123456789012345678901234567890}}', b'"\\\\\\', b"1e99999", b"-"]),
    st.integers(1, 100_000).map(lambda n: b"[" * n),  # deeper than any parser allows
)


def variants(body: bytes, rnd: random.Random) -> list[bytes]:
    """The body and four cheap mutations of it: cut short, a byte flipped, trailing junk, batched."""
    cut = rnd.randrange(len(body)) if body else 0
    flip = bytearray(body or b"{}")
    flip[rnd.randrange(len(flip))] = rnd.choice(b'\xff\x00"\\}\xc3')
    return [body, body[:cut], bytes(flip), body + rnd.choice([b"\x00", b"}", b" x", b"\r\n\r\nGET / HTTP/1.1"]),
            b'{"batch":[' + body + b"]}"]


Case = tuple[str, bytes, bytes, bool, str, "bytes | None", bool]


@st.composite
def hostile_requests(draw: st.DrawFn) -> list[Case]:
    """(route, content type, body, same-origin header, encoding, Authorization, writeKey in the body) x 5:
    a generated body and its mutations.

    A composite also keeps hypothesis' reprs of these big strategies small.
    """
    rnd = draw(st.randoms(use_true_random=False))
    body = draw(bodies)
    # Mostly the types the collector takes, so that most bodies reach the JSON and event checks;
    # mostly plain bodies and no key, so that most reach the events.
    types = st.one_of(st.sampled_from(CONTENT_TYPES[:3]), st.sampled_from(CONTENT_TYPES))
    encodings = st.one_of(st.just("identity"), st.sampled_from(ENCODINGS))
    keys = st.one_of(st.none(), st.sampled_from(AUTHORIZATIONS))
    return [(draw(st.sampled_from(ROUTES)), draw(types), variant, draw(st.booleans()), draw(encodings), draw(keys),
             draw(st.booleans())) for variant in variants(body, rnd)]


def reason_of(status: int, body: bytes) -> str:
    """A 4xx's reason, with the quoted values cut out so that equal reasons count together.

    ``/_ps/e``'s errors are ``{"error"}``, ``/v1/*``'s are Segment's ``{"success": false, "code", "message"}``.
    """
    try:
        answer = orjson.loads(body)
        if "code" in answer:
            assert answer["success"] is False and type(answer["message"]) is str and answer["message"], answer
            message = f"segment {answer['code']}: {answer['message']}"
        else:
            message = str(answer.get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return f"{status} (no JSON error body)"
    message = re.sub(r"'[^']*'|\"[^\"]*\"|\d+|: .*", "_", message)
    return f"{status} {message.strip()[:80]}"


def test_fuzzed_bodies_never_get_a_5xx(web: WebProcess) -> None:
    figures: Counter[str] = Counter()
    rejected_events: Counter[str] = Counter()
    server_errors: list[tuple[str, bytes, int]] = []
    client = httpx.Client(base_url=web.url, timeout=30.0, trust_env=False,
                          limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS))
    baseline: list[float] = []
    lock = threading.Lock()
    pool = ThreadPoolExecutor(CONNECTIONS)
    in_flight: list[Future[None]] = []

    def send(case: Case) -> None:
        path, content_type, body, sec_fetch, encoding, authorization, body_key = case
        headers = [(b"user-agent", b"Mozilla/5.0 (fuzz)")]
        if content_type:
            headers.append((b"content-type", content_type))
        if sec_fetch:
            headers.append((b"sec-fetch-site", b"same-origin"))
        if authorization is not None:
            headers.append((b"authorization", authorization))
        if body_key and body.startswith(b"{") and len(body) > 2:
            body = b'{"writeKey":"' + (WRITE_KEY if len(body) % 2 else "wrong-key").encode() + b'",' + body[1:]
        wire, content_encoding = encoded(body, encoding)
        if content_encoding is not None:
            headers.append((b"content-encoding", content_encoding))
        response = client.post(path, content=wire, headers=headers)
        with lock:
            figures[f"sent {encoding}" + (" with a key" if authorization or body_key else "")] += 1
            count(path, body, response)

    def count(path: str, body: bytes, response: httpx.Response) -> None:
        figures["cases"] += 1
        status = response.status_code
        if status >= 500:
            server_errors.append((path, body[:300], status))
        elif status == 202:
            figures["202"] += 1
            answer = response.json()
            assert set(answer) == {"accepted", "rejected"}, answer
            for rejection in answer["rejected"]:
                rejected_events[rejection["reasons"][0].split(":", 1)[0][:50]] += 1
        elif status == 200 and path.startswith("/_ps/v1/"):
            figures["200 segment"] += 1
            assert response.json() == {"success": True}, response.content
        elif status == 200:
            figures["200 consent"] += 1
        else:
            assert 400 <= status < 500, status
            assert response.headers["content-type"] == "application/json", response.headers
            figures[reason_of(status, response.content)] += 1

    @settings(max_examples=max(1, CASES // PER_EXAMPLE), deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])  # a failure is printed as is
    @given(st.lists(hostile_requests(), min_size=PER_EXAMPLE // 5, max_size=PER_EXAMPLE // 5))
    def fuzz(groups: list[list[Case]]) -> None:
        in_flight.extend(pool.submit(send, case) for group in groups for case in group)
        if len(in_flight) > 400:  # keep generation a little ahead of the server, not minutes ahead
            for future in in_flight:
                future.result()
            in_flight.clear()
        if not baseline and figures["cases"] >= 1000:
            baseline.append(rss_mb(web.pid))  # after warm-up: imports, pools, caches are in place

    try:
        fuzz()
        for future in in_flight:
            future.result()
        health = client.get("/_ps/health")
    finally:
        pool.shutdown(cancel_futures=True)
        client.close()
    rss = rss_mb(web.pid)
    start = baseline[0] if baseline else 0.0
    print(f"\ncollector fuzz: {figures['cases']} cases, {len(server_errors)} 5xx, RSS {start:.0f} -> {rss:.0f} MB")
    for reason, count in figures.most_common():
        print(f"  {count:>6}  {reason}")
    print("  events rejected inside 202 answers, by first reason:")
    for reason, count in rejected_events.most_common(12):
        print(f"  {count:>6}  {reason}")
    assert not server_errors, server_errors[:3]
    assert figures["cases"] >= CASES
    # every new way in was exercised, and some of each got through
    assert figures["200 segment"] > 0 and figures["sent gzip with a key"] > 0 and figures["sent bomb"] > 0
    assert any(reason.startswith("401 segment unauthorized") for reason in figures)
    assert any(reason.startswith("413 segment payload_too_large") for reason in figures)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert baseline and rss - baseline[0] < 60, f"RSS grew from {baseline[0]:.0f} MB to {rss:.0f} MB"
