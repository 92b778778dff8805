"""``GET {prefix}/c.js``: the browser collector script, built once per process.

The source (``c.js`` beside this module) is already hand-minified; start-up drops its header
comment and line breaks, fills in the consent mode and the consent cookie's name, and gzips it.
The response carries an ``ETag``; a request for the versioned URL (``c.js?v=<hash>``, see
:attr:`Script.url`) is cached for a year as immutable, the bare URL for five minutes.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from importlib.resources import files

from starlette.types import Receive, Scope, Send

from pinsignal.config import Config
from pinsignal.consent import ConsentPolicy

__all__ = ["Script"]

_IMMUTABLE = b"public, max-age=31536000, immutable"
_SHORT = b"public, max-age=300"


def _js_regex_escape(text: str) -> str:
    return re.sub(r"([^A-Za-z0-9_-])", r"\\\1", text)


class Script:
    """The script's bytes (plain and gzipped), version and ETag, and the ASGI responder for them."""

    def __init__(self, config: Config) -> None:
        source = files("pinsignal.collector").joinpath("c.js").read_text(encoding="utf-8")
        lines = source.splitlines()
        if lines and lines[0].startswith("/*"):
            lines = lines[1:]
        body = "".join(line.strip() for line in lines)
        body = body.replace("__MODE__", config.consent)
        body = body.replace("__CC__", _js_regex_escape(ConsentPolicy(config).cookie_name))
        self.body = body.encode("utf-8")
        self.gzipped = gzip.compress(self.body, compresslevel=9, mtime=0)
        self.version = hashlib.sha256(self.body).hexdigest()[:12]
        self.etag = f'"{self.version}"'.encode("ascii")
        self.url = f"{config.collector_prefix}/c.js?v={self.version}"
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
