"""``pinsignal inspector [--host 127.0.0.1] [--port 8420]``: the live page of the trace."""

from __future__ import annotations

import argparse
import os


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("PINSIGNAL_INSPECTOR_HOST", "127.0.0.1"),
                        help="address to bind (default 127.0.0.1; anything but loopback needs PINSIGNAL_ADMIN_TOKEN)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PINSIGNAL_INSPECTOR_PORT", "8420")),
                        help="port (default 8420)")


def run(args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    from pinsignal.config import Config
    from pinsignal.embedded import redis_url
    from pinsignal.errors import ConfigError
    from pinsignal.inspector import create_app, is_loopback

    config = Config.from_env()
    if not is_loopback(args.host) and not config.admin_token:
        raise ConfigError(f"--host {args.host} is not a loopback address; set PINSIGNAL_ADMIN_TOKEN (a long random "
                          "string) so that the inspector asks for it, or bind to 127.0.0.1.")
    url = redis_url(config)

    server = uvicorn.Server(uvicorn.Config(create_app(config, redis_url=url), host=args.host, port=args.port,
                                           log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=2))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"pinsignal inspector on http://{shown}:{args.port}/"
          + (" (token required: open /?token=... once)" if config.admin_token else ""), flush=True)
    asyncio.run(server.serve())
    return 0
