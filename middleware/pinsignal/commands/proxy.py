"""``pinsignal proxy --upstream URL``: the middleware in front of any site, on the site's own origin.

Every option can come from the environment (``PINSIGNAL_UPSTREAM``, ``PINSIGNAL_PROXY_*``; see
:class:`pinsignal.proxy.ProxySettings`), so the same command works in a container with no
arguments. The command only parses: :func:`pinsignal.proxy.serve.serve` does the rest.
"""

from __future__ import annotations

import argparse

# option -> the ProxySettings field it sets; an option left out keeps the environment's value
_FIELDS = ("upstream", "host", "port", "workers", "timeout", "host_header", "ssl_certfile", "ssl_keyfile",
           "access_log", "inject", "tag_companion", "server_pageviews")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", metavar="URL",
                        help="the site to forward to, e.g. http://127.0.0.1:8080 (env PINSIGNAL_UPSTREAM)")
    parser.add_argument("--host", help="address to listen on (env PINSIGNAL_PROXY_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (env PINSIGNAL_PROXY_PORT; default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (env PINSIGNAL_PROXY_WORKERS; default 1)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="seconds to wait for the upstream to connect or send, then 504 (env "
                             "PINSIGNAL_PROXY_TIMEOUT; default 30)")
    parser.add_argument("--host-header", choices=["keep", "upstream"],
                        help="send the visitor's Host (keep, default) or the upstream's "
                             "(env PINSIGNAL_PROXY_HOST_HEADER)")
    parser.add_argument("--ssl-certfile", metavar="PEM",
                        help="serve HTTPS with this certificate chain (env PINSIGNAL_PROXY_SSL_CERTFILE)")
    parser.add_argument("--ssl-keyfile", metavar="PEM",
                        help="the certificate's private key (env PINSIGNAL_PROXY_SSL_KEYFILE)")
    parser.add_argument("--access-log", action="store_true", default=None,
                        help="log every request, full URL included (env PINSIGNAL_PROXY_ACCESS_LOG=true; default off)")
    parser.add_argument("--inject", action="store_true", default=None,
                        help="add the collector <script> tag to HTML pages (env PINSIGNAL_PROXY_INJECT)")
    parser.add_argument("--tag-companion", action="store_true", default=None,
                        help="with --inject, the tag says data-tag: every browser event also goes to the "
                             "Pinterest Tag, with the same event_id (env PINSIGNAL_PROXY_TAG_COMPANION)")
    parser.add_argument("--server-pageviews", action="store_true", default=None,
                        help="count HTML page views on the server, no script needed "
                             "(env PINSIGNAL_PROXY_SERVER_PAGEVIEWS)")


def run(args: argparse.Namespace) -> int:
    from pinsignal.config import Config
    from pinsignal.proxy import ProxySettings
    from pinsignal.proxy.serve import serve

    overrides = {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}
    serve(ProxySettings.from_env(**overrides), Config.from_env(), log_level=args.log_level)
    return 0
