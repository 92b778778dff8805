"""``pinsignal inspector``: a live web page of the trace (see :mod:`pinsignal.inspector.app`)."""

from __future__ import annotations

from pinsignal.inspector.app import create_app, is_loopback

__all__ = ["create_app", "is_loopback"]
