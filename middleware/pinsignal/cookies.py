"""The first-party cookies pinsignal sets (DESIGN section 5).

``_epik``  the Pinterest click id, as the Pinterest Tag writes it, so a tag still on the page reads it;
``_psid``  a random 128-bit device id, signed, rolling;
``_psu``   hashed match keys remembered by ``identify()``, signed.

All three live 400 days (the most RFC 6265bis lets a browser keep), are ``SameSite=Lax`` and
``Secure`` on https. They are set by the server on the site's own origin, which is what keeps
Safari from capping them to 7 days (``reference/perf-reliability.md`` section 6).

The two signed cookies carry the time they were signed inside the signature (itsdangerous's
timestamp format), and the server holds them to the same 400 days when reading: a value signed
longer ago, or more than :data:`CLOCK_SKEW` seconds in the future, is treated as absent
(``_psid`` gets a new id, ``_psu`` gives no match keys), whatever the browser kept or an attacker
replays. ``_psid`` rolls (signed again weekly while the visitor is active); ``_psu`` lives 400 days
from the last ``identify()``. Every value pinsignal has ever issued carries its timestamp, so there
is no transition: the cookies in browsers today are read as before until they are 400 days old.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import time
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from itsdangerous import BadData, BadSignature, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes
from publicsuffixlist import PublicSuffixList

__all__ = [
    "CLOCK_SKEW",
    "CONSENT_MAX_AGE",
    "COOKIE_MAX_AGE",
    "DEVICE_COOKIE",
    "DEVICE_RENEW_AFTER",
    "EPIK_COOKIE",
    "IDENTITY_COOKIE",
    "CookieDomain",
    "CookieWriter",
    "DeviceIds",
    "IdentityCookie",
    "epik_from_query",
    "set_cookie",
    "valid_epik",
]

EPIK_COOKIE = "_epik"
DEVICE_COOKIE = "_psid"
IDENTITY_COOKIE = "_psu"
COOKIE_MAX_AGE = 34_560_000  # 400 days, in seconds: the cap of RFC 6265bis and Chrome
DEVICE_RENEW_AFTER = 7 * 24 * 3600  # a week: re-issue the device cookie so it keeps rolling
CONSENT_MAX_AGE = 180 * 24 * 3600  # consent is asked again after about six months
CLOCK_SKEW = 300  # seconds a signature may be "from the future": web servers' clocks differ a little
EPIK_MAX_LENGTH = 1024

# RFC 6265 cookie-octet: printable ASCII without space, '"', ',', ';' and '\'. Anything else in an
# epik is not a Pinterest click id, and must never be written back into a header.
_COOKIE_OCTETS = re.compile(r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]{1,1024}")
# Cookie-octets that a query string carries as they are (no '%' escapes, no '+' for space).
_PLAIN_EPIK = re.compile(rb"[\x21\x23\x24\x27-\x2A\x2D-\x3A\x3C-\x5B\x5D-\x7E]{1,1024}")
_HOST_NAME = re.compile(r"^[a-z0-9.-]+$")
_DOMAIN_CACHE_LIMIT = 4096
_VERIFIED_CACHE_LIMIT = 4096


def valid_epik(value: str) -> bool:
    """Whether ``value`` is a plausible click id: 1-1024 cookie-safe characters."""
    return len(value) <= EPIK_MAX_LENGTH and _COOKIE_OCTETS.fullmatch(value) is not None


def epik_from_query(query_string: bytes) -> str | None:
    """The last valid ``epik`` in a raw query string, percent-decoded; ``None`` when there is none."""
    found: str | None = None
    for parameter in query_string.split(b"&"):
        if not parameter.startswith(b"epik="):
            continue
        raw = parameter[5:]
        if len(raw) > 3 * EPIK_MAX_LENGTH:
            continue
        if _PLAIN_EPIK.fullmatch(raw):  # the usual case: nothing to decode, nothing to check again
            found = raw.decode("ascii")
            continue
        if b"%" in raw or b"+" in raw:
            value = unquote_plus(raw.decode("latin-1"), encoding="utf-8", errors="replace")
        else:
            value = raw.decode("latin-1")
        if valid_epik(value):
            found = value
    return found


def set_cookie(
    name: str,
    value: str,
    *,
    max_age: int = COOKIE_MAX_AGE,
    secure: bool,
    httponly: bool,
    domain: str | None = None,
    same_site: str = "Lax",
) -> str:
    """One ``Set-Cookie`` header value. ``value`` must already be cookie-safe."""
    return f"{name}={value}{_attributes(max_age, same_site, domain, secure, httponly)}"


@lru_cache(maxsize=256)
def _attributes(max_age: int, same_site: str, domain: str | None, secure: bool, httponly: bool) -> str:
    parts = ["", f"Max-Age={max_age}", "Path=/", f"SameSite={same_site}"]
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    return "; ".join(parts)


class CookieDomain:
    """The ``Domain`` attribute for a request's host, per ``PINSIGNAL_COOKIE_DOMAIN``.

    ``None`` keeps cookies host-only. ``"auto"`` uses the registrable domain from the Public Suffix
    List (``shop.example.co.uk`` -> ``example.co.uk``, never ``co.uk``); IP addresses, ``localhost``
    and hosts that are themselves a public suffix stay host-only. Any other value is used as given.
    """

    def __init__(self, setting: str | None) -> None:
        self._auto = setting == "auto"
        self._fixed = None if self._auto or not setting else setting.lstrip(".").lower()
        self._psl = PublicSuffixList() if self._auto else None
        self._cache: dict[bytes, str | None] = {}

    @property
    def enabled(self) -> bool:
        return self._auto or self._fixed is not None

    def for_host(self, host_header: bytes | None) -> str | None:
        """The domain for a raw ``Host`` header value (port included or not)."""
        if not self._auto:
            return self._fixed
        if not host_header:
            return None
        if host_header in self._cache:
            return self._cache[host_header]
        domain = self._registrable(host_header)
        if len(self._cache) >= _DOMAIN_CACHE_LIMIT:
            self._cache.clear()
        self._cache[host_header] = domain
        return domain

    def _registrable(self, host_header: bytes) -> str | None:
        host = host_header.decode("latin-1").strip().lower()
        if host.startswith("["):  # an IPv6 literal, with or without a port
            return None
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        host = host.rstrip(".")
        if not host or not _HOST_NAME.match(host) or host == "localhost" or host.endswith(".localhost"):
            return None
        try:
            ipaddress.ip_address(host)
            return None
        except ValueError:
            pass
        assert self._psl is not None
        domain: str | None = self._psl.privatesuffix(host)
        return domain


class DeviceIds:
    """Signed random device ids for ``_psid``, in itsdangerous ``TimestampSigner`` format (``id.time.signature``).

    Values are interchangeable with ``TimestampSigner(secret, salt="pinsignal.device-id")``: the
    same derived key, HMAC-SHA1 and URL-safe unpadded base64. The keyed HMAC is built once and
    copied per signature.
    """

    def __init__(self, secret: str) -> None:
        key: bytes = TimestampSigner(secret, salt="pinsignal.device-id").derive_key()
        self._hmac = hmac.new(key, digestmod=hashlib.sha1)
        self._stamp: tuple[int, bytes] = (-1, b"")
        # Recent valid cookie values and what they say: a returning browser posts the same _psid
        # with every event, and checking it costs more than the rest of the cookie work. A value
        # that fails the check is never kept, so only signed values can fill this.
        self._verified: dict[str, tuple[str, int]] = {}

    def read(self, raw: str | None, *, now: float | None = None) -> tuple[str | None, float]:
        """The device id in a cookie value and the age of its signature in seconds.

        A missing, forged or tampered value gives ``(None, 0.0)``, and so does one signed over
        400 days ago (:data:`COOKIE_MAX_AGE`) or more than :data:`CLOCK_SKEW` seconds ahead.
        """
        if not raw:
            return None, 0.0
        known = self._verified.get(raw)
        if known is None:
            known = self._verify(raw)
            if known is None:
                return None, 0.0
            if len(self._verified) >= _VERIFIED_CACHE_LIMIT:
                self._verified.clear()
            self._verified[raw] = known
        age = (time.time() if now is None else now) - known[1]
        if not -CLOCK_SKEW <= age <= COOKIE_MAX_AGE:
            return None, 0.0
        return known[0], max(0.0, age)

    def _verify(self, raw: str) -> tuple[str, int] | None:
        """``(device id, signed at)`` of a value whose signature holds; ``None`` otherwise."""
        if raw.count(".") != 2 or not raw.isascii():
            return None
        payload, _, signature = raw.encode("ascii").rpartition(b".")
        if not hmac.compare_digest(signature, self._signature(payload)):
            return None
        value, _, stamp = payload.partition(b".")
        try:
            signed_at = bytes_to_int(base64_decode(stamp))
        except (BadData, ValueError):
            return None
        return value.decode("ascii"), signed_at

    def renewal(self, raw: str | None) -> tuple[str, str | None]:
        """The device id for a request carrying ``raw``, and the signed ``_psid`` value to set.

        A missing or forged value gets a new id; a valid one keeps its id and is signed again when
        its signature is over a week old. The value is ``None`` when the cookie can stay as it is.
        """
        device_id, age = self.read(raw)
        if device_id is None:
            return self.mint()
        if age > DEVICE_RENEW_AFTER:
            return device_id, self.sign(device_id)
        return device_id, None

    def mint(self) -> tuple[str, str]:
        """A fresh device id and its signed cookie value."""
        device_id = os.urandom(16).hex()
        return device_id, self.sign(device_id)

    def sign(self, device_id: str) -> str:
        now = int(time.time())
        if self._stamp[0] != now:
            self._stamp = (now, b"." + base64_encode(int_to_bytes(now)))
        payload = device_id.encode("ascii") + self._stamp[1]
        return (payload + b"." + self._signature(payload)).decode("ascii")

    def _signature(self, payload: bytes) -> bytes:
        signer = self._hmac.copy()
        signer.update(payload)
        return base64_encode(signer.digest())


class IdentityCookie:
    """``_psu``: a signed map of trait name to SHA-256 match key. Raw values never go in."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="pinsignal.identity")

    def dumps(self, hashed: dict[str, str]) -> str:
        value: str = self._serializer.dumps(hashed)
        return value

    def loads(self, raw: str | None, *, now: float | None = None) -> dict[str, str]:
        """The hashed keys in a cookie value; a forged, tampered or malformed value gives ``{}``,
        and so does one signed over 400 days ago or more than :data:`CLOCK_SKEW` seconds ahead."""
        if not raw:
            return {}
        try:
            data: Any
            data, signed_at = self._serializer.loads(raw, return_timestamp=True)
        except (BadSignature, ValueError):
            return {}
        age = (time.time() if now is None else now) - signed_at.timestamp()
        if not -CLOCK_SKEW <= age <= COOKIE_MAX_AGE:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(key): value for key, value in data.items() if isinstance(value, str)}


class CookieWriter:
    """Builds the ``Set-Cookie`` values for one configuration; flags follow the request's scheme and host."""

    def __init__(self, *, domain: CookieDomain, epik_httponly: bool) -> None:
        self._domain = domain
        self._epik_httponly = epik_httponly

    def epik(self, value: str, *, secure: bool, host: bytes | None) -> str:
        return set_cookie(EPIK_COOKIE, value, secure=secure, httponly=self._epik_httponly,
                          domain=self._domain.for_host(host))

    def device(self, signed: str, *, secure: bool, host: bytes | None) -> str:
        return set_cookie(DEVICE_COOKIE, signed, secure=secure, httponly=True, domain=self._domain.for_host(host))

    def identity(self, signed: str, *, secure: bool, host: bytes | None) -> str:
        return set_cookie(IDENTITY_COOKIE, signed, secure=secure, httponly=True, domain=self._domain.for_host(host))

    def consent(self, name: str, granted: bool, *, secure: bool, host: bytes | None) -> str:
        # Readable by the browser script (not HttpOnly) so a later page knows consent was given.
        return set_cookie(name, "1" if granted else "0", max_age=CONSENT_MAX_AGE, secure=secure, httponly=False,
                          domain=self._domain.for_host(host))

    def expire(self, name: str, *, secure: bool, host: bytes | None) -> str:
        return set_cookie(name, "", max_age=0, secure=secure, httponly=False, domain=self._domain.for_host(host))
