"""Where an event comes from: a browser, or a server that holds a write key (DESIGN 8.1).

    keys = WriteKeys.parse(config.write_keys)       # "shop-backend:k3y,other" -> named keys
    keys.check("k3y")                               # "shop-backend", or None for a wrong key

``PINSIGNAL_WRITE_KEYS`` is a comma-separated list of ``name:key`` pairs or bare keys (a bare key is
named ``key-1``, ``key-2``... by its place). A request that carries one, as HTTP Basic with the key as
the user name and an empty password (what Segment's and RudderStack's libraries send) or as
``writeKey`` in a body that no browser sent, comes from a **server source**: its ``context.ip``,
``context.userAgent``, ``context.page``, ``context.epik`` and ``context.visitor_key`` are believed.
Keys are compared with :func:`hmac.compare_digest`, each against every configured key, so the time
an answer takes says nothing about how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from pinsignal.errors import ConfigError

__all__ = ["SOURCES", "Source", "WriteKeys", "basic_user"]

Source = Literal["browser", "server"]
SOURCES: tuple[Source, ...] = ("browser", "server")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MIN_KEY = 16


@dataclass(frozen=True)
class WriteKeys:
    """The configured write keys, by name (names show in logs and the trace; keys never do)."""

    keys: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> WriteKeys:
        """``("name:key", "key", ...)`` as ``PINSIGNAL_WRITE_KEYS`` gives them; raises :class:`ConfigError`."""
        keys: list[tuple[str, bytes]] = []
        for index, entry in enumerate(entries, 1):
            name, colon, key = entry.strip().rpartition(":")
            if not colon:
                name = f"key-{index}"
            elif not _NAME.match(name):
                raise ConfigError(f"PINSIGNAL_WRITE_KEYS: the name {name!r} must be 1-64 letters, digits, "
                                  "'_', '.' or '-' (entries are name:key or a bare key).")
            if len(key) < _MIN_KEY or not key.isascii() or not key.isprintable() or " " in key:
                # the key itself is not quoted: a real key must not reach a log
                raise ConfigError(f"PINSIGNAL_WRITE_KEYS: the key of {name!r} must be at least {_MIN_KEY} printable "
                                  "ASCII characters without spaces; use a long random string "
                                  "(python -c 'import secrets; print(secrets.token_urlsafe(24))').")
            if any(name == known for known, _ in keys):
                raise ConfigError(f"PINSIGNAL_WRITE_KEYS names {name!r} twice; give each key its own name.")
            keys.append((name, key.encode("ascii")))
        return cls(tuple(keys))

    def __bool__(self) -> bool:
        return bool(self.keys)

    def check(self, candidate: str | bytes) -> str | None:
        """The name of the key ``candidate`` is, or ``None``. Every key is compared, in constant time each."""
        raw = candidate.encode("utf-8", "replace") if isinstance(candidate, str) else candidate
        found: str | None = None
        for name, key in self.keys:
            if hmac.compare_digest(raw, key) and found is None:
                found = name
        return found


def basic_user(authorization: bytes | None) -> bytes | None:
    """The user name of an ``Authorization: Basic`` header (where Segment's libraries put the write key)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    return decoded.partition(b":")[0]
