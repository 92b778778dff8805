"""A minimal Pinterest events sink for benchmarks: answers 200 with a valid ConversionApiResponse at once.

No validation, no dedup, no recording: the cheapest server a sender can be measured against. It is a
raw ASGI app (no framework) meant for uvicorn with httptools::

    .venv/bin/python tests/bench/sink.py --port 8411          # then PINTEREST_API_URL=http://127.0.0.1:8411

or in a benchmark::

    from sink import SINK_PATH, start_sink                     # tests/bench on sys.path
    with start_sink() as url:                                   # a subprocess on a free port
        ...                                                     # send to url + "/v5/ad_accounts/1/events"
        stats = httpx.get(url + "/_sink/stats").json()          # {"requests": n, "events": n}

Every ``POST .../events`` answers ``{"num_events_received": N, "num_events_processed": N, "events":
[{"status": "processed", ...} * N]}`` where N is the number of events in the body, counted as
occurrences of the ``"event_id"`` key (a JSON string value cannot contain that byte sequence unescaped).
``GET /_sink/stats`` returns the counters; ``POST /_sink/reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

SINK_PATH = Path(__file__).resolve()
_ENTRY = b'{"status":"processed","error_message":"","warning_message":""}'
_JSON = [(b"content-type", b"application/json")]
_bodies: dict[int, bytes] = {}
_stats = {"requests": 0, "events": 0}


def _response_body(count: int) -> bytes:
    body = _bodies.get(count)
    if body is None:
        body = _bodies[count] = (
            b'{"num_events_received":%d,"num_events_processed":%d,"events":[' % (count, count)
            + b",".join([_ENTRY] * count) + b"]}"
        )
    return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The sink as a bare ASGI callable."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    path = scope["path"]
    if scope["method"] == "POST" and path.endswith("/events"):
        count = b"".join(chunks).count(b'"event_id"')
        _stats["requests"] += 1
        _stats["events"] += count
        status, body = 200, _response_body(count)
    elif path == "/_sink/stats":
        status, body = 200, orjson.dumps(_stats)
    elif path == "/_sink/reset":
        _stats.update(requests=0, events=0)
        status, body = 200, b'{"ok":true}'
    else:
        status, body = 404, b'{"code":404,"message":"Resource not found."}'
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def start_sink(port: int | None = None) -> Iterator[str]:
    """Run the sink in its own process on a free port; yields its base URL."""
    sys.path.insert(0, str(SINK_PATH.parent.parent))
    from support import free_port, run_process

    port = port or free_port()
    with run_process([sys.executable, str(SINK_PATH), "--port", str(port)], port=port):
        yield f"http://127.0.0.1:{port}"


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="A sink that answers every events POST with 200 at once.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8411)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", log_level="warning", access_log=False,
                server_header=False, date_header=False)


if __name__ == "__main__":
    main()
