"""Candidate for the benchmark: the proxy's client to the upstream on aiohttp's client."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .headers import RawHeaders, strip_hop_by_hop
from .upstream_httpcore import UpstreamClosed, UpstreamConnectError, UpstreamError, UpstreamTimeout


class UpstreamResponse:
    __slots__ = ("status", "headers", "_response")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers = strip_hop_by_hop(response.raw_headers)
        self._response = response

    @property
    def length(self) -> int | None:
        for name, value in self.headers:
            if name.lower() == b"content-length" and value.isdigit():
                return int(value)
        return None

    async def read(self) -> bytes:
        try:
            return await self._response.content.readany()
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise UpstreamTimeout("The upstream did not send anything within the timeout.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamClosed(f"The upstream closed the connection before its answer was complete: {exc}.") from exc

    async def aclose(self) -> None:
        self._response.release()


class UpstreamPool:
    def __init__(self, url: str, *, timeout: float = 30.0, max_connections: int = 256, max_idle: int = 64,
                 keepalive_expiry: float = 4.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        self._max_connections = max_connections
        self._expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0,
                                         keepalive_timeout=self._expiry, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=self.timeout))
        return self._session

    async def request(self, method: str, target: bytes, headers: RawHeaders,
                      body: AsyncIterator[bytes] | None = None, *, retry: bool = True) -> UpstreamResponse:
        session = self._session or self._open()
        url = URL(self._origin + target.decode("latin-1"), encoded=True)
        pairs = CIMultiDict([(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers])
        try:
            response = await session.request(method, url, headers=pairs, data=body, allow_redirects=False)
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"Cannot connect to {self.host}:{self.port}: {exc}.") from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise UpstreamTimeout("The upstream did not answer within the timeout.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"The upstream failed: {exc}.") from exc
        return UpstreamResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
