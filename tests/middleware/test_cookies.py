from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from itsdangerous import TimestampSigner

from pinsignal.cookies import (
    CookieDomain,
    DeviceIds,
    IdentityCookie,
    epik_from_query,
    set_cookie,
    valid_epik,
)

SECRET = "cookie-secret-0123456789"


@pytest.mark.parametrize(("query", "expected"), [
    (b"epik=abc", "abc"),
    (b"a=1&epik=dj0yJnU9Zm9v%3D%3D&b=2", "dj0yJnU9Zm9v=="),
    (b"epik=first&epik=second", "second"),
    (b"epik=good&epik=b%3Bad", "good"),
    (b"xepik=abc", None),
    (b"epik=", None),
    (b"epik=a%0Ab", None),
    (b"epik=" + b"x" * 1025, None),
    (b"q=epik=abc", None),
    (b"&epik=abc&", "abc"),
    (b"epik=a&&epik=b+c", "a"),   # "b c" has a space: not a click id
    (b"a=1&&epik=b%2Fc", "b/c"),
])
def test_epik_from_query(query: bytes, expected: str | None) -> None:
    assert epik_from_query(query) == expected


@pytest.mark.parametrize(("value", "ok"), [
    ("dj0yJnU9Zm9vJm49YmFy", True), ("a-b_c.d~e:f/g+h=", True), ("a;b", False), ("a,b", False),
    ("a b", False), ("a\tb", False), ("a\x00b", False), ("a\x7fb", False), ('a"b', False), ("é", False),
    ("x" * 1024, True), ("x" * 1025, False), ("", False),
])
def test_valid_epik(value: str, ok: bool) -> None:
    assert valid_epik(value) is ok


@pytest.mark.parametrize(("host", "domain"), [
    (b"shop.example.co.uk", "example.co.uk"),
    (b"example.co.uk", "example.co.uk"),
    (b"www.shop.example.com:8443", "example.com"),
    (b"SHOP.Example.COM.", "example.com"),
    (b"user.github.io", "user.github.io"),   # a private suffix: never the shared github.io
    (b"co.uk", None),                        # a public suffix itself: host-only
    (b"localhost", None), (b"localhost:8000", None), (b"app.localhost", None),
    (b"127.0.0.1:8000", None), (b"[::1]:8000", None), (b"192.0.2.1", None),
    (b"", None), (b"bad host", None),
])
def test_cookie_domain_auto(host: bytes, domain: str | None) -> None:
    assert CookieDomain("auto").for_host(host) == domain


def test_cookie_domain_fixed_and_host_only() -> None:
    assert CookieDomain(".example.com").for_host(b"shop.example.com") == "example.com"
    assert CookieDomain(None).for_host(b"shop.example.com") is None
    assert not CookieDomain(None).enabled


def test_set_cookie_attribute_order() -> None:
    assert set_cookie("a", "b", secure=True, httponly=True, domain="example.com") == (
        "a=b; Max-Age=34560000; Path=/; SameSite=Lax; Domain=example.com; Secure; HttpOnly")


def test_device_ids_round_trip_and_reject_tampering() -> None:
    devices = DeviceIds(SECRET)
    device_id, signed = devices.mint()
    assert len(device_id) == 32 and int(device_id, 16) >= 0
    read_id, age = devices.read(signed)
    assert read_id == device_id and 0 <= age < 5
    tampered = ("0" if signed[0] != "0" else "1") + signed[1:]  # another id under the same signature
    assert devices.read(tampered) == (None, 0.0)
    assert devices.read(DeviceIds("other-secret-0123456789").sign(device_id)) == (None, 0.0)
    assert devices.read(None) == (None, 0.0)
    assert devices.read("garbage") == (None, 0.0)
    assert devices.mint()[0] != device_id


def test_device_ids_remembered_reads_agree_with_a_fresh_check() -> None:
    devices = DeviceIds(SECRET)
    device_id, signed = devices.mint()
    first = devices.read(signed, now=time.time())
    again = devices.read(signed, now=time.time() + 8 * 24 * 3600)  # from the cache: the age still moves
    assert first[0] == again[0] == device_id and again[1] - first[1] > 8 * 24 * 3600 - 5
    assert DeviceIds(SECRET).read(signed, now=time.time() + 8 * 24 * 3600)[0] == device_id
    tampered = signed[:-1] + ("A" if signed[-1] != "A" else "B")
    assert devices.read(tampered) == (None, 0.0) and tampered not in devices._verified  # never kept
    for _ in range(5000):
        devices.read(devices.mint()[1])
    assert len(devices._verified) <= 4096


def test_identity_cookie_keeps_only_what_it_signed() -> None:
    cookie = IdentityCookie(SECRET)
    hashed = {"email": "a" * 64, "user_id": "b" * 64}
    signed = cookie.dumps(hashed)
    assert cookie.loads(signed) == hashed
    assert "@" not in signed
    assert cookie.loads(signed + "x") == {}
    assert cookie.loads(IdentityCookie("other-secret-0123456789").dumps(hashed)) == {}
    assert cookie.loads(IdentityCookie(SECRET).dumps(["not", "a", "map"])) == {}  # type: ignore[arg-type]


# Signed with the hand-written HMAC that pinsignal used until December 2026 (commit dd3d783), at
# the time given: browsers hold such cookies for 400 days, so every later signer must verify them
# and sign the same id at the same second to the same bytes.
_LONG_SECRET = "another-secret-with-more-than-sixty-four-characters-0123456789abcdefghijklmnop"
GOLDEN_DEVICE_COOKIES = [
    (SECRET, "0123456789abcdef0123456789abcdef", 1764547200,
     "0123456789abcdef0123456789abcdef.aSzagA.gA2HWIg59dHOJssSHO0k4chi5Zs"),
    (SECRET, "ffffffffffffffffffffffffffffffff", 1800000000,
     "ffffffffffffffffffffffffffffffff.a0nSAA.muVT9TzeH9WOzcOurI7mu7UqEVM"),
    (_LONG_SECRET, "d" * 32, 1764547201,  # a secret longer than SHA-1's block
     "dddddddddddddddddddddddddddddddd.aSzagQ.ChpIxw_sS1E6V1RmcW7rqb43Zq0"),
]
GOLDEN_IDENTITY_COOKIES = [
    (SECRET, {"email": "a" * 64, "user_id": "b" * 64}, 1764547200,
     ".eJyrVkrNTczMUbJSSqQQKOkolRanFsVnpgANS6IQKNUCAMwBOFw.aSzagA._ccKO-S8nTj9ij91TNBPUhNpEFU"),
    (SECRET, {"phone": "c" * 64}, 1800000000, ".eJyrVirIyM9LVbJSSqYQKNUCAD57HJU.a0nSAA.wB8DH6ulo9_g-EPpbwjU_9eV0h0"),
]


@pytest.mark.parametrize(("secret", "device_id", "signed_at", "value"), GOLDEN_DEVICE_COOKIES)
def test_device_cookies_signed_by_earlier_releases_still_verify_and_are_reproduced(
        secret: str, device_id: str, signed_at: int, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DeviceIds(secret).read(value, now=signed_at + 60) == (device_id, 60.0)
    assert DeviceIds("other-secret-0123456789").read(value) == (None, 0.0)
    # The format is itsdangerous's TimestampSigner's, which reads them too.
    signer = TimestampSigner(secret, salt="pinsignal.device-id")
    assert signer.unsign(value, return_timestamp=True) == (device_id.encode(), datetime.fromtimestamp(signed_at, UTC))
    monkeypatch.setattr(time, "time", lambda: signed_at + 0.25)
    assert DeviceIds(secret).sign(device_id) == value


@pytest.mark.parametrize(("secret", "hashed", "signed_at", "value"), GOLDEN_IDENTITY_COOKIES)
def test_identity_cookies_signed_by_earlier_releases_still_load_and_are_reproduced(
        secret: str, hashed: dict[str, str], signed_at: int, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Read a minute after signing: since issue 18 (item 10) a value is honoured for 400 days only,
    # so the check names its moment (the second value was signed "in the future" of this machine).
    assert IdentityCookie(secret).loads(value, now=signed_at + 60) == hashed
    assert IdentityCookie("other-secret-0123456789").loads(value, now=signed_at + 60) == {}
    monkeypatch.setattr(time, "time", lambda: signed_at + 0.25)
    assert IdentityCookie(secret).dumps(hashed) == value


# ---------------------------------------------------------------- issue 18, item 10: lifetimes enforced


DAY = 24 * 3600


def test_regression_item10_a_device_cookie_is_honoured_for_400_days_only() -> None:
    devices = DeviceIds(SECRET)
    device_id, signed = devices.mint()
    now = time.time()
    assert devices.read(signed, now=now + 399 * DAY)[0] == device_id
    assert devices.read(signed, now=now + 401 * DAY) == (None, 0.0)  # even from the verified cache
    assert DeviceIds(SECRET).read(signed, now=now + 401 * DAY) == (None, 0.0)
    assert devices.read(signed, now=now - 3600) == (None, 0.0)  # signed an hour in the future: not ours
    assert devices.read(signed, now=now - 60)[0] == device_id  # a minute: another server's clock
    for secret, golden_id, signed_at, value in GOLDEN_DEVICE_COOKIES:
        assert DeviceIds(secret).read(value, now=signed_at + 399 * DAY)[0] == golden_id
        assert DeviceIds(secret).read(value, now=signed_at + 401 * DAY) == (None, 0.0)
    # An expired id is a new visitor: renewal mints a new id rather than signing the old one again.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: now + 401 * DAY)
        assert devices.renewal(signed)[0] != device_id


def test_regression_item10_an_identity_cookie_is_honoured_for_400_days_only() -> None:
    cookie = IdentityCookie(SECRET)
    hashed = {"email": "a" * 64}
    signed = cookie.dumps(hashed)
    now = time.time()
    assert cookie.loads(signed, now=now + 399 * DAY) == hashed
    assert cookie.loads(signed, now=now + 401 * DAY) == {}
    assert cookie.loads(signed, now=now - 3600) == {}
    for secret, golden, signed_at, value in GOLDEN_IDENTITY_COOKIES:
        assert IdentityCookie(secret).loads(value, now=signed_at + 401 * DAY) == {}
        assert IdentityCookie(secret).loads(value, now=signed_at + 399 * DAY) == golden


@pytest.mark.anyio
async def test_regression_item10_a_psu_signed_years_ago_adds_no_match_keys_and_an_old_psid_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mw_support import BROWSER, SECRET as MW_SECRET, client, cookies_named, wrap

    from pinsignal import MemorySink

    real_time = time.time
    with monkeypatch.context() as patch:  # what a browser (or an attacker) kept from two years ago
        patch.setattr(time, "time", lambda: real_time() - 730 * DAY)
        old_identity = IdentityCookie(MW_SECRET).dumps({"email": "e" * 64})
        old_device_id, old_device = DeviceIds(MW_SECRET).mint()
    fresh_identity = IdentityCookie(MW_SECRET).dumps({"email": "f" * 64})
    sink = MemorySink()
    headers = {"content-type": "application/json", "user-agent": BROWSER}
    body = {"type": "track", "event": "order_completed", "message_id": "m-old", "properties": {}}
    async with client(wrap(sink=sink)) as http:
        stale = await http.post("/_ps/e", json=body, headers={
            **headers, "cookie": f"_psu={old_identity}; _psid={old_device}"})
        fresh = await http.post("/_ps/e", json={**body, "message_id": "m-new"},
                                headers={**headers, "cookie": f"_psu={fresh_identity}"})
    assert stale.status_code == 202 and fresh.status_code == 202
    old_event, new_event = sink.events
    assert "email" not in old_event["envelope"].get("traits", {})
    assert old_event["envelope"]["anonymous_id"] != old_device_id
    [device] = cookies_named(stale, "_psid")  # a new device id is issued in its place
    assert not device.startswith(f"_psid={old_device_id}.")
    assert new_event["envelope"]["traits"]["email"] == "f" * 64
