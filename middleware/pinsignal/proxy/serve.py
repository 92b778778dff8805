"""``serve()``: run the proxy under uvicorn, with every option from :class:`ProxySettings`.

    serve(ProxySettings.from_env(upstream="http://127.0.0.1:8080"), Config.from_env())

``pinsignal proxy`` parses its options and calls this; so can a script of the site's own.
"""

from __future__ import annotations

import os
from typing import Any

from pinsignal.config import Config

from .app import create_app, quiet_httpx
from .guard import guarded_protocol
from .settings import ProxySettings

__all__ = ["serve"]


def serve(settings: ProxySettings, config: Config, *, log_level: str = "info") -> None:
    """Serve until stopped. With several workers, each process rebuilds ``settings`` from the environment."""
    import uvicorn

    config.require_secret()
    # The server in front must add nothing of its own: the upstream's Server and Date headers pass
    # through, and X-Forwarded-For is judged by the proxy against PINSIGNAL_TRUSTED_PROXIES.
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "server_header": False, "date_header": False,
        "proxy_headers": False, "log_level": log_level, "access_log": settings.access_log,
        "ssl_certfile": settings.ssl_certfile, "ssl_keyfile": settings.ssl_keyfile,
        # The visitor limits (docs/security.md): uvicorn closes a kept-alive connection idle for
        # head_timeout; the protocol bounds the time and size of each head and the time an answer
        # may wait unread.
        "timeout_keep_alive": settings.head_timeout,
    }
    quiet_httpx()
    if settings.workers == 1:
        uvicorn.run(create_app(settings, config=config), http=guarded_protocol(settings), **options)
    else:
        # Each process imports the protocol by name and takes the limits from the environment.
        os.environ.update(settings.to_env())
        uvicorn.run("pinsignal.proxy:app_from_env", factory=True, workers=settings.workers,
                    http="pinsignal.proxy.guard:GuardedHttpProtocol", **options)
