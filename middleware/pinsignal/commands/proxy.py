"""``pinsignal proxy --upstream URL``: the middleware in front of any site, on the site's own origin.

Every option can come from the environment (``PINSIGNAL_UPSTREAM``, ``PINSIGNAL_PROXY_*``), so the
same command works in a container with no arguments. Worker processes are started by uvicorn from
an import string and rebuild their settings from those variables.
"""

from __future__ import annotations

import argparse
import os

from pinsignal.errors import ConfigError

_ENV_HOST = "PINSIGNAL_PROXY_HOST"
_ENV_PORT = "PINSIGNAL_PROXY_PORT"
_ENV_WORKERS = "PINSIGNAL_PROXY_WORKERS"


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    parser.add_argument("--upstream", default=env.get("PINSIGNAL_UPSTREAM"), metavar="URL",
                        help="the site to forward to, e.g. http://127.0.0.1:8080 (env PINSIGNAL_UPSTREAM)")
    parser.add_argument("--host", default=env.get(_ENV_HOST, "127.0.0.1"),
                        help=f"address to listen on (env {_ENV_HOST}; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (env {_ENV_PORT}; default 8000)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"worker processes (env {_ENV_WORKERS}; default 1)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds to wait for the upstream to connect or send, then 504 (env "
                             "PINSIGNAL_PROXY_TIMEOUT; default 30)")
    parser.add_argument("--host-header", choices=["keep", "upstream"], default=None,
                        help="send the visitor's Host (keep, default) or the upstream's "
                             "(env PINSIGNAL_PROXY_HOST_HEADER)")
    parser.add_argument("--ssl-certfile", default=env.get("PINSIGNAL_PROXY_SSL_CERTFILE"), metavar="PEM",
                        help="serve HTTPS with this certificate chain (env PINSIGNAL_PROXY_SSL_CERTFILE)")
    parser.add_argument("--ssl-keyfile", default=env.get("PINSIGNAL_PROXY_SSL_KEYFILE"), metavar="PEM",
                        help="the certificate's private key (env PINSIGNAL_PROXY_SSL_KEYFILE)")
    parser.add_argument("--access-log", action="store_true",
                        default=env.get("PINSIGNAL_PROXY_ACCESS_LOG", "").lower() == "true",
                        help="log every request, full URL included (env PINSIGNAL_PROXY_ACCESS_LOG=true; default off)")
    parser.add_argument("--inject", action="store_true", default=None,
                        help="add the collector <script> tag to HTML pages (env PINSIGNAL_PROXY_INJECT)")
    parser.add_argument("--server-pageviews", action="store_true", default=None,
                        help="count HTML page views on the server, no script needed "
                             "(env PINSIGNAL_PROXY_SERVER_PAGEVIEWS)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pinsignal.config import Config
    from pinsignal.proxy import ProxySettings, create_app
    from pinsignal.proxy.app import quiet_httpx
    from pinsignal.proxy.server import http_protocol

    overrides = {name: value for name, value in (
        ("upstream", args.upstream), ("timeout", args.timeout), ("host_header", args.host_header),
        ("inject", args.inject), ("server_pageviews", args.server_pageviews)) if value is not None}
    settings = ProxySettings.from_env(**overrides)
    config = Config.from_env()
    config.require_secret()
    port = args.port if args.port is not None else _int_env(_ENV_PORT, 8000)
    workers = args.workers if args.workers is not None else _int_env(_ENV_WORKERS, 1)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together; give both to serve HTTPS, or neither.")
    # The server in front must add nothing of its own: the upstream's Server and Date headers pass
    # through, and X-Forwarded-For is judged by the proxy against PINSIGNAL_TRUSTED_PROXIES.
    options = {"host": args.host, "port": port, "server_header": False, "date_header": False,
               "proxy_headers": False, "log_level": args.log_level, "access_log": args.access_log,
               "ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile,
               # uvicorn's own HTTP/1.1 protocol, plus the fast lane for plain pass-through requests.
               "http": http_protocol()}
    quiet_httpx()
    if workers == 1:
        uvicorn.run(create_app(settings, config=config), **options)
    else:
        os.environ.update(settings.to_env())
        uvicorn.run("pinsignal.proxy:app_from_env", factory=True, workers=workers, **options)
    return 0


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
