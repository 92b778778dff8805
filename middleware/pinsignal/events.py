"""The incoming event envelope (DESIGN section 3). OWNER: pipelines work (issue 2). STUB.

Contract used by the collector and by ``track()``:

    envelope = parse_envelope(raw, received_at=time.time())   # raises EnvelopeError(reasons)

``raw`` is untrusted JSON (a dict from a browser, Segment's analytics.js or server code).
The result is a plain dict in canonical form: snake_case top-level keys (``messageId`` ->
``message_id``...), ``type`` in track/page/identify, ``timestamp`` corrected for clock skew with
``sent_at`` (timestamp - sent_at + received_at), ``context`` kept with Segment's names.
"""

from __future__ import annotations

from typing import Any


def parse_envelope(raw: object, *, received_at: float) -> dict[str, Any]:
    raise NotImplementedError
