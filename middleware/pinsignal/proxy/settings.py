"""The proxy's own settings, from keywords or ``PINSIGNAL_UPSTREAM`` and friends.

    settings = ProxySettings(upstream="http://127.0.0.1:8080", inject=True)
    settings = ProxySettings.from_env()     # PINSIGNAL_UPSTREAM, PINSIGNAL_PROXY_TIMEOUT, ...

The server's own options (address, port, worker processes, TLS, access log) are here too, so the
command line only parses and a process started by ``--workers`` rebuilds the same object from the
environment. Everything else (collector prefix, trusted proxies, secret, consent) is the
middleware's ``Config``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pinsignal.envsettings import from_env, prefixed, to_env
from pinsignal.errors import ConfigError

__all__ = ["ENVIRONMENT", "HostHeader", "ProxySettings"]

HostHeader = Literal["keep", "upstream"]
_UPSTREAM_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


@dataclass(frozen=True)
class ProxySettings:
    """Where to forward and how. ``timeout`` bounds connecting and each wait for upstream bytes.

    Limits on visitors (``docs/security.md``): ``head_timeout`` seconds to send a request head,
    ``max_head_size`` bytes of it (request line and headers; past it a 431), ``write_timeout``
    seconds a visitor may leave the answer unread before the connection is cut, and
    ``max_per_client`` upstream requests at once per visitor address (more wait their turn).
    """

    upstream: str
    timeout: float = 30.0
    host_header: HostHeader = "keep"
    inject: bool = False
    tag_companion: bool = False  # injected tags say data-tag: c.js hands each event to the Pinterest Tag too
    server_pageviews: bool = False
    max_connections: int = 256
    head_timeout: float = 5.0
    max_head_size: int = 64 * 1024
    write_timeout: float = 30.0
    max_per_client: int = 32
    collector_prefix: str = "/_ps"  # the middleware's, from Config; no variable of its own
    # the server
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    access_log: bool = False

    def __post_init__(self) -> None:
        if not _UPSTREAM_RE.match(self.upstream):
            raise ConfigError(
                f"PINSIGNAL_UPSTREAM must be an http(s) URL like 'http://127.0.0.1:8080' "
                f"(no query or fragment), got {self.upstream!r}."
            )
        if not self.timeout > 0:
            raise ConfigError(f"PINSIGNAL_PROXY_TIMEOUT must be a positive number of seconds, got {self.timeout!r}.")
        if self.host_header not in ("keep", "upstream"):
            raise ConfigError(f"PINSIGNAL_PROXY_HOST_HEADER must be 'keep' or 'upstream', got {self.host_header!r}.")
        if self.max_connections < 1:
            raise ConfigError(
                f"PINSIGNAL_PROXY_MAX_CONNECTIONS must be at least 1, got {self.max_connections!r}."
            )
        for name, seconds in (("HEAD_TIMEOUT", self.head_timeout), ("WRITE_TIMEOUT", self.write_timeout)):
            if not seconds > 0:
                raise ConfigError(f"PINSIGNAL_PROXY_{name} must be a positive number of seconds, got {seconds!r}.")
        if self.max_head_size < 1024:
            raise ConfigError(
                f"PINSIGNAL_PROXY_MAX_HEAD_SIZE must be at least 1024 bytes, got {self.max_head_size!r}."
            )
        if self.max_per_client < 1:
            raise ConfigError(f"PINSIGNAL_PROXY_MAX_PER_CLIENT must be at least 1, got {self.max_per_client!r}.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"PINSIGNAL_PROXY_PORT must be a port number, got {self.port!r}.")
        if self.workers < 1:
            raise ConfigError(f"PINSIGNAL_PROXY_WORKERS must be at least 1, got {self.workers!r}.")
        if self.tag_companion and not self.inject:
            raise ConfigError(
                "PINSIGNAL_PROXY_TAG_COMPANION puts data-tag on the script tag the proxy injects; turn on "
                "PINSIGNAL_PROXY_INJECT (--inject) too, or add data-tag to the site's own script tag."
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError(
                "PINSIGNAL_PROXY_SSL_CERTFILE and PINSIGNAL_PROXY_SSL_KEYFILE go together; give both to serve "
                "HTTPS, or neither."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ProxySettings:
        """Read the ``PINSIGNAL_UPSTREAM``/``PINSIGNAL_PROXY_*`` variables; keywords override them."""
        source = os.environ if environ is None else environ
        if overrides.get("upstream") is None and not source.get(ENVIRONMENT["upstream"], "").strip():
            raise ConfigError("PINSIGNAL_UPSTREAM is not set; give the site to proxy, e.g. --upstream http://127.0.0.1:8080.")
        return from_env(cls, ENVIRONMENT, source, overrides=overrides)

    def to_env(self) -> dict[str, str]:
        """The same settings as environment variables (how ``--workers`` processes receive them)."""
        return to_env(self, ENVIRONMENT)


# ProxySettings field -> environment variable (collector_prefix is the middleware's setting)
ENVIRONMENT = {name: variable for name, variable in prefixed(ProxySettings, "PINSIGNAL_PROXY_").items()
               if name != "collector_prefix"} | {"upstream": "PINSIGNAL_UPSTREAM"}
