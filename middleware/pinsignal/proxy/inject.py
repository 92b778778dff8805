"""``--inject``: put the collector's ``<script>`` tag into HTML pages as they stream past.

The tag goes right before ``</head>`` (or before ``<body`` on pages that leave out ``</head>``),
matched case-insensitively and across chunk boundaries: the few bytes at a chunk's end that could
start the marker are held back until the next chunk shows whether they do. Nothing else in the page
changes, and only the first marker counts. A page with neither marker in its first megabyte is
passed on unchanged.

Compressed pages: the proxy asks the upstream for ``identity`` on navigations; an upstream that
compresses anyway with gzip or deflate is decoded here (``Content-Encoding`` and ``Content-Length``
dropped). Other encodings (br, zstd) pass through without the tag.
"""

from __future__ import annotations

import html
import re
import zlib
from typing import Protocol

__all__ = ["Decoder", "HeadInjector", "is_html", "script_tag"]

_MARKER = re.compile(rb"</head\s*>|<body[\s>/]", re.IGNORECASE)
_PARTIAL = re.compile(rb"<(/(h(e(ad?)?)?)?|b(o(dy?)?)?)?$|</head\s*$", re.IGNORECASE)
_SEARCH_LIMIT = 1024 * 1024
_TAIL = 64  # longest held-back prefix ("</head" followed by whitespace) worth keeping

DECODABLE = frozenset({b"gzip", b"x-gzip", b"deflate"})


def is_html(content_type: bytes | None) -> bool:
    """Whether a ``Content-Type`` is an HTML page."""
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in (b"text/html", b"application/xhtml+xml")


def script_tag(src: str, pageview_id: str | None = None, *, tag_companion: bool = False) -> bytes:
    """``<script src="/_ps/c.js?v=..." defer></script>``, with ``data-pv`` when the server counted this
    page view and ``data-tag`` in Tag companion mode (``docs/migration.md``)."""
    attributes = f' data-pv="{html.escape(pageview_id)}"' if pageview_id else ""
    if tag_companion:
        attributes += " data-tag"
    return f'<script src="{html.escape(src)}" defer{attributes}></script>'.encode()


class HeadInjector:
    """Streaming insertion of ``tag`` before the first ``</head>``; feed chunks, then ``finish()``."""

    __slots__ = ("_tag", "_held", "_seen", "done")

    def __init__(self, tag: bytes) -> None:
        self._tag = tag
        self._held = b""
        self._seen = 0
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return chunk
        data = self._held + chunk if self._held else chunk
        self._held = b""
        match = _MARKER.search(data)
        if match is not None:
            self.done = True
            return data[:match.start()] + self._tag + data[match.start():]
        self._seen += len(data)
        if self._seen > _SEARCH_LIMIT:
            self.done = True  # no head in the first megabyte: not a page worth touching
            return data
        tail_start = max(0, len(data) - _TAIL)
        partial = _PARTIAL.search(data, tail_start)
        if partial is not None:
            self._held = data[partial.start():]
            self._seen -= len(self._held)
            return data[:partial.start()]
        return data

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        self.done = True
        return held


class _Inflater(Protocol):
    """What ``zlib.decompressobj()`` gives, as far as a decoder uses it."""

    def decompress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class Decoder:
    """Streaming gzip/deflate decoding for pages that arrive compressed although identity was asked."""

    __slots__ = ("_inflater",)

    def __init__(self, encoding: bytes) -> None:
        # 32 + MAX_WBITS reads both gzip and zlib headers; a raw deflate stream needs negative bits.
        self._inflater: _Inflater = (_DeflateEither() if encoding == b"deflate"
                                     else zlib.decompressobj(32 + zlib.MAX_WBITS))

    def feed(self, chunk: bytes) -> bytes:
        return self._inflater.decompress(chunk)

    def finish(self) -> bytes:
        return self._inflater.flush()


class _DeflateEither:
    """``Content-Encoding: deflate`` is zlib-wrapped by the RFC, raw deflate by some servers: try both."""

    def __init__(self) -> None:
        self._inflater: _Inflater | None = None
        self._start = b""

    def decompress(self, chunk: bytes) -> bytes:
        if self._inflater is None:
            self._start += chunk
            if len(self._start) < 2:
                return b""
            first, second = self._start[0], self._start[1]
            zlib_header = first & 0x0F == 8 and (first << 8 | second) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
            chunk, self._start = self._start, b""
        return self._inflater.decompress(chunk)

    def flush(self) -> bytes:
        if self._inflater is None:
            return zlib.decompress(self._start, -zlib.MAX_WBITS) if self._start else b""
        return self._inflater.flush()
