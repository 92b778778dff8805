"""pinsignal: server-side tracking for the Pinterest API for Conversions.

    from pinsignal import PinSignalMiddleware, track, identify

    app.add_middleware(PinSignalMiddleware)
"""

from __future__ import annotations

__version__ = "0.1.0"
