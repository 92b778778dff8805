"""Per-client quotas on the collector (issue 18, item 8): token buckets by client address, 429 with Retry-After."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from mw_support import BROWSER, client, wrap

from pinsignal import Config, MemorySink
from pinsignal.collector.quota import ClientQuota
from pinsignal.errors import ConfigError

JSON = {"content-type": "application/json", "user-agent": BROWSER}


def batch(start: int, count: int) -> bytes:
    return orjson.dumps({"batch": [{"type": "track", "event": "product_added", "message_id": f"m-{n}",
                                    "properties": {}} for n in range(start, start + count)]})


def test_a_bucket_spends_its_burst_then_refills_at_the_rate() -> None:
    quota = ClientQuota(per_minute=60, burst=3)  # one token a second
    assert [quota.check("192.0.2.1", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert quota.check("192.0.2.1", now=0.0) == pytest.approx(1.0)
    assert quota.check("192.0.2.2", now=0.0) == 0.0  # another client has its own bucket
    assert quota.check("192.0.2.1", now=1.0) == 0.0
    assert quota.check("192.0.2.1", now=100.0) == 0.0  # refills up to the burst, no further
    assert [quota.check("192.0.2.1", now=100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_events_are_charged_and_a_batch_may_put_a_bucket_into_debt() -> None:
    quota = ClientQuota(per_minute=60, burst=10)
    assert quota.check("192.0.2.1", now=0.0) == 0.0
    quota.charge("192.0.2.1", 100, now=0.0)  # 10 - 1 - 100 = -91 tokens
    assert quota.check("192.0.2.1", now=0.0) == pytest.approx(92.0)
    assert quota.check("192.0.2.1", now=91.5) == pytest.approx(0.5)
    assert ClientQuota.retry_after(0.5) == b"1" and ClientQuota.retry_after(91.2) == b"92"


def test_ipv6_clients_share_a_bucket_per_64_and_the_table_is_bounded() -> None:
    quota = ClientQuota(per_minute=60, burst=1, max_clients=100)
    assert quota.check("2001:db8:1:2::1", now=0.0) == 0.0
    assert quota.check("2001:db8:1:2:ffff::9", now=0.0) > 0  # same /64
    assert quota.check("2001:db8:1:3::1", now=0.0) == 0.0
    assert quota.check("::ffff:192.0.2.1", now=0.0) == 0.0  # a mapped IPv4 address is an IPv6 peer's own
    assert quota.check("fe80::1%eth0", now=0.0) == 0.0 and quota.check("fe80::1%eth0", now=0.0) > 0  # a zone id
    assert quota.check("not:an:address", now=0.0) == 0.0
    for n in range(1000):
        quota.check(f"10.0.{n // 256}.{n % 256}", now=0.0)
    assert len(quota._buckets) <= 100


@pytest.mark.parametrize(("changes", "message"), [
    ({"client_events_per_minute": -1}, "PINSIGNAL_CLIENT_EVENTS_PER_MINUTE"),
    ({"client_burst": 0}, "PINSIGNAL_CLIENT_BURST"),
])
def test_quota_settings_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(secret="quota-secret-0123456789", **changes)


def test_quota_settings_from_the_environment() -> None:
    config = Config.from_env({"PINSIGNAL_CLIENT_EVENTS_PER_MINUTE": "0", "PINSIGNAL_CLIENT_BURST": "50"})
    assert (config.client_events_per_minute, config.client_burst) == (0, 50)
    assert (Config().client_events_per_minute, Config().client_burst) == (1200, 400)


@pytest.mark.anyio
async def test_regression_item8_a_client_past_its_quota_gets_429_with_retry_after_and_nothing_is_queued() -> None:
    sink = MemorySink()
    app = wrap(sink=sink, client_events_per_minute=60, client_burst=150)
    async with client(app, peer="198.51.100.7") as http:
        answers = [await http.post("/_ps/e", content=batch(n * 100, 100), headers=JSON) for n in range(5)]
        other = await http.post("/_ps/e", content=batch(900, 1), headers={**JSON, "x-forwarded-for": "1.2.3.4"})
    async with client(app, peer="198.51.100.8") as http:
        neighbour = await http.post("/_ps/e", content=batch(1000, 1), headers=JSON)
    statuses = [answer.status_code for answer in answers]
    assert statuses == [202, 202, 429, 429, 429], statuses
    refused = answers[2]
    assert int(refused.headers["retry-after"]) >= 50  # 150 - 2 - 200 = -52 tokens at one a second
    assert "too many posts" in refused.json()["error"]
    assert len(sink.events) == 201  # the two posts within the quota, and the neighbour's
    assert other.status_code == 429  # X-Forwarded-For from an untrusted peer changes nothing
    assert neighbour.status_code == 202  # another address has its own quota


@pytest.mark.anyio
async def test_the_quota_can_be_switched_off() -> None:
    sink = MemorySink()
    async with client(wrap(sink=sink, client_events_per_minute=0)) as http:
        answers = [await http.post("/_ps/e", content=batch(n * 100, 100), headers=JSON) for n in range(10)]
    assert {answer.status_code for answer in answers} == {202}
    assert len(sink.events) == 1000


KEY = "sk-backend-0123456789abcdef"


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def segment_batch(start: int, count: int) -> bytes:
    return orjson.dumps({"batch": [{"type": "track", "event": "Product Added", "messageId": f"s-{n}",
                                    "anonymousId": "a-1", "properties": {}} for n in range(start, start + count)]})


@pytest.mark.anyio
async def test_regression_item8_segment_browser_posts_are_charged_per_event_and_no_header_buys_a_way_round() -> None:
    browser = {"content-type": "text/plain", "user-agent": BROWSER, "origin": "http://testserver",
               "sec-fetch-site": "same-origin"}
    app = wrap(sink=MemorySink(), client_events_per_minute=60, client_burst=150, write_keys=(f"backend:{KEY}",))
    async with client(app) as http:
        first = await http.post("/_ps/v1/batch", content=segment_batch(0, 200), headers=browser)
        second = await http.post("/_ps/v1/batch", content=segment_batch(200, 1), headers=browser)
        # A browser's post with a key (analytics-next sends its public one) is a browser's post.
        keyed_browser = await http.post("/_ps/v1/batch", content=segment_batch(300, 1), headers=browser | basic(KEY))
        # Authorization buys nothing on the browser route, with a real key or not.
        keyed_e = await http.post("/_ps/e", content=batch(0, 1), headers=JSON | basic(KEY))
        # A server library (key, no Origin, no Sec-Fetch-Site) is not counted: its key is checked first.
        server = await http.post("/_ps/v1/batch", content=segment_batch(400, 50),
                                 headers={"content-type": "application/json", "user-agent": "analytics-python/2.4.0"}
                                 | basic(KEY))
        wrong_key = await http.post("/_ps/v1/batch", content=segment_batch(500, 1),
                                    headers={"content-type": "application/json"} | basic("x" * 24))
    assert first.status_code == 200, first.text
    assert (second.status_code, keyed_browser.status_code, keyed_e.status_code) == (429, 429, 429)
    assert int(second.headers["retry-after"]) >= 50  # 150 - 1 - 200 tokens at one a second
    assert second.json()["success"] is False and second.json()["code"] == "too_many_requests"  # Segment's shape
    assert server.status_code == 200, server.text
    assert wrong_key.status_code == 401
