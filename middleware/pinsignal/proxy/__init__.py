"""Reverse proxy: ``pinsignal proxy --upstream URL`` puts pinsignal in front of a site written in anything.

    from pinsignal.proxy import ProxySettings, create_app
    app = create_app(ProxySettings(upstream="http://127.0.0.1:8080", inject=True, server_pageviews=True))

Modules: ``app`` (the ASGI app and its lifespan), ``forward`` (one HTTP exchange), ``upstream`` (the
client to the site, on aiohttp's), ``headers`` (hop-by-hop, Host, X-Forwarded-*), ``inject``
(the script tag, streaming), ``pageviews`` (server-side page views), ``websocket`` (pass-through),
``guard`` (limits on visitors: request heads, unread answers, ``Host``, per-address slots),
``settings``, ``serve`` (under uvicorn). Guide: ``docs/proxy.md``; limits: ``docs/security.md``.
"""

from __future__ import annotations

from .app import ProxyApp, app_from_env, create_app
from .settings import ProxySettings
from .upstream import UpstreamError, UpstreamPool

__all__ = ["ProxyApp", "ProxySettings", "UpstreamError", "UpstreamPool", "app_from_env", "create_app"]
