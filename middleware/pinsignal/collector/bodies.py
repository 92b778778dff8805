"""Reading a collector request's body: size limits, ``Content-Encoding``, JSON.

    body = await read_body(receive, visitor, limit=MAX_SEGMENT_BATCH)   # raises BodyRefused

Limits hold on what arrives *and* on what it decompresses to: ``Content-Length`` is checked first,
the bytes are counted as they arrive, and a ``gzip`` or ``deflate`` body is inflated in steps with
``max_length`` (``zlib.decompressobj``), so a compression bomb is refused with ``413`` after
inflating at most ``limit + 1`` bytes, in memory bounded by the limit, whatever its ratio.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.types import Receive

from .intake import VisitorRequest

__all__ = ["JSON_TYPES", "BodyRefused", "Disconnected", "decode_json", "inflate", "read_body", "shown",
           "with_batch_defaults"]

JSON_TYPES = (b"application/json", b"text/plain")
# zlib's wbits: gzip framing (16 + 15); zlib framing or, for deflate bodies sent raw, no framing (-15)
_GZIP, _ZLIB, _RAW = 31, 15, -15
_STEP = 64 * 1024  # inflate at most this much per call, so the limit is checked while inflating


class BodyRefused(Exception):
    """The request's body cannot be taken: ``status`` (400, 413, 415), ``code`` and the sentence."""

    def __init__(self, status: int, code: str, message: str, *, closing: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.closing = closing  # the rest of the body was not read: the connection cannot be reused


class Disconnected(Exception):
    """The client went away before the body arrived."""


def _encoding(visitor: VisitorRequest) -> int | None:
    """zlib's wbits for the body's ``Content-Encoding``, ``None`` for identity; raises for anything else."""
    raw = visitor.content_encoding
    if raw is None:
        return None
    name = raw.strip().lower()
    if name in (b"", b"identity"):
        return None
    if name in (b"gzip", b"x-gzip"):
        return _GZIP
    if name == b"deflate":
        return _ZLIB
    raise BodyRefused(415, "unsupported_encoding",
                      f"Content-Encoding {raw.decode('latin-1')[:40]!r} is not supported; "
                      "send the body as is, gzip or deflate")


def check_content_type(visitor: VisitorRequest) -> None:
    content_type = (visitor.content_type or b"").split(b";", 1)[0].strip().lower()
    if content_type not in JSON_TYPES:
        shown = (visitor.content_type or b"no Content-Type").decode("latin-1")
        raise BodyRefused(415, "unsupported_media_type",
                          f"events must be sent as application/json or text/plain, got {shown!r}")


async def read_body(receive: Receive, visitor: VisitorRequest, *, limit: int, encodings: bool = True) -> bytes:
    """The request body, decompressed, at most ``limit`` bytes both on the wire and once inflated.

    ``encodings=False`` refuses any ``Content-Encoding`` but identity (``415``).
    """
    check_content_type(visitor)
    wbits = _encoding(visitor)
    if wbits is not None and not encodings:
        raise BodyRefused(415, "unsupported_encoding", "this route takes only uncompressed bodies")
    if visitor.content_length is not None:
        try:
            declared = int(visitor.content_length)
        except ValueError:
            raise BodyRefused(400, "invalid_request", f"Content-Length {visitor.content_length.decode('latin-1')!r} "
                                                      "is not a number") from None
        if declared > limit:
            raise BodyRefused(413, "payload_too_large", f"the body is {declared} bytes; the limit is {limit}",
                              closing=True)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyRefused(413, "payload_too_large", f"the body is over the limit of {limit} bytes", closing=True)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body if wbits is None else inflate(body, wbits, limit)


def inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """``data`` decompressed, refused with ``413`` as soon as it passes ``limit`` bytes.

    A ``deflate`` body may come with zlib's framing (what the HTTP spec means) or without it
    (what some clients send): the framing decides.
    """
    if wbits == _ZLIB and data and (data[0] & 0x0F) != 8:
        wbits = _RAW
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    size = 0
    pending = data
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, _STEP)
            pending = inflater.unconsumed_tail
            if not piece and not pending:
                break  # the input is used up
            size += len(piece)
            if size > limit:
                raise BodyRefused(413, "payload_too_large",
                                  f"the body inflates to more than the limit of {limit} bytes")
            out.append(piece)
    except zlib.error as exc:
        raise BodyRefused(400, "invalid_encoding", f"the body is not valid {_NAMES[wbits]} data: {exc}") from None
    if not inflater.eof:
        raise BodyRefused(400, "invalid_encoding", f"the {_NAMES[wbits]} body is cut short")
    return b"".join(out)


_NAMES = {_GZIP: "gzip", _ZLIB: "deflate", _RAW: "deflate"}


def decode_json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyRefused(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def with_batch_defaults(raw: object, shared: dict[str, Any], default_type: str | None) -> object:
    """One event of a batch with what the batch says for all of them: its type (a Segment route's),
    its ``sentAt`` and its ``context`` (the event's own keys win)."""
    if type(raw) is not dict:
        return raw
    event = dict(raw)
    if default_type is not None:
        event.setdefault("type", default_type)
    if "sent_at" not in event and "sentAt" not in event:
        sent_at = shared.get("sent_at", shared.get("sentAt"))
        if sent_at is not None:
            event["sent_at"] = sent_at
    context = shared.get("context")
    if type(context) is dict:
        own = event.get("context")
        event["context"] = {**context, **own} if type(own) is dict else context
    return event


def shown(value: object) -> str:
    """``value`` as JSON, cut to 60 characters, for an error message."""
    try:
        text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    except TypeError:  # orjson reads 1024 levels of nesting but writes only 255
        text = f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."
