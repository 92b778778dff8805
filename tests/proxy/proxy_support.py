"""Shared by the proxy tests (a module of its own: ``conftest`` is not importable by name in every layout)."""

from __future__ import annotations

from typing import Any

from pinsignal.proxy import ProxySettings
from pinsignal.proxy.guard import guarded_protocol

# The server in front of the proxy must add no Server/Date of its own and leave X-Forwarded-For to
# the proxy, exactly as ``pinsignal proxy`` runs it.
PROXY_SERVER_OPTIONS: dict[str, Any] = {"server_header": False, "date_header": False, "proxy_headers": False,
                                        "access_log": False}


def proxy_server_options(settings: ProxySettings) -> dict[str, Any]:
    """``PROXY_SERVER_OPTIONS`` plus the visitor limits, as ``pinsignal proxy`` serves ``settings``."""
    return {**PROXY_SERVER_OPTIONS, "http": guarded_protocol(settings), "timeout_keep_alive": settings.head_timeout}
