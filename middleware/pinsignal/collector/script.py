"""``GET {prefix}/c.js`` and ``GET {prefix}/t.js``: the browser scripts, built once per process.

``c.js`` (beside this module) is already hand-minified; start-up drops its header comment and line
breaks, fills in the consent mode and the consent cookie's name, and gzips it. It stays at or under
1,000 bytes gzipped (DESIGN 7; ``tests/middleware/test_collector.py`` holds it to that), which is
why it uses ES2021 syntax (arrows, ``?.``, ``||=``): Chrome and Edge 85, Firefox 79, Safari 14 on.

``t.js`` is the Tag companion (:mod:`pinsignal.collector.companion`): c.js loads it only when its
script tag says ``data-tag``. Its rules are made from the loaded pipelines at start-up.

Each response carries an ``ETag``; a request for the versioned URL (``c.js?v=<hash>``, see
:attr:`Script.url`) is cached for a year as immutable, the bare URL for five minutes.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable
from importlib.resources import files

import orjson
from starlette.types import Receive, Scope, Send

from pinsignal.config import Config
from pinsignal.consent import ConsentPolicy
from pinsignal.pipeline.spec import Pipeline

from .companion import tag_rules

__all__ = ["Companion", "Script", "ScriptFile"]

_IMMUTABLE = b"public, max-age=31536000, immutable"
_SHORT = b"public, max-age=300"


def _js_regex_escape(text: str) -> str:
    return re.sub(r"([^A-Za-z0-9_-])", r"\\\1", text)


def _minified(name: str) -> str:
    """A hand-minified source beside this module: header comment dropped, lines stripped and joined."""
    lines = files("pinsignal.collector").joinpath(name).read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("/*"):
        lines = lines[1:]
    return "".join(line.strip() for line in lines)


class ScriptFile:
    """A script's bytes (plain and gzipped), version and ETag, and the ASGI responder for them."""

    def __init__(self, body: str, url: str) -> None:
        self.body = body.encode("utf-8")
        self.gzipped = gzip.compress(self.body, compresslevel=9, mtime=0)
        self.version = hashlib.sha256(self.body).hexdigest()[:12]
        self.etag = f'"{self.version}"'.encode("ascii")
        self.url = f"{url}?v={self.version}"
        self._version_query = f"v={self.version}".encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        versioned = self._version_query in scope.get("query_string", b"").split(b"&")
        common = [
            (b"content-type", b"text/javascript; charset=utf-8"),
            (b"etag", self.etag),
            (b"cache-control", _IMMUTABLE if versioned else _SHORT),
            (b"vary", b"Accept-Encoding"),
            (b"x-content-type-options", b"nosniff"),
        ]
        match = headers.get(b"if-none-match")
        if match is not None and (self.etag in match or match.strip() == b"*"):
            await send({"type": "http.response.start", "status": 304, "headers": common})
            await send({"type": "http.response.body", "body": b""})
            return
        body = self.body
        if b"gzip" in headers.get(b"accept-encoding", b""):
            body = self.gzipped
            common.append((b"content-encoding", b"gzip"))
        common.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": 200, "headers": common})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class Script(ScriptFile):
    """``c.js`` for one configuration (consent mode and cookie filled in)."""

    def __init__(self, config: Config) -> None:
        body = _minified("c.js")
        body = body.replace("__OPTIN__", "!0" if config.consent == "opt-in" else "!1")
        body = body.replace("__CC__", _js_regex_escape(ConsentPolicy(config).cookie_name))
        super().__init__(body, f"{config.collector_prefix}/c.js")


class Companion(ScriptFile):
    """``t.js`` with the Tag rules of ``pipelines`` (see :func:`~pinsignal.collector.companion.tag_rules`)."""

    def __init__(self, config: Config, pipelines: Iterable[Pipeline]) -> None:
        self.rules = tag_rules(pipelines)
        rules = orjson.dumps(self.rules).decode("utf-8").replace("<", "\\u003c")
        super().__init__(_minified("t.js").replace("__MAP__", rules), f"{config.collector_prefix}/t.js")
