"""``pinsignal sandbox``: the strict local stand-in for Pinterest's events endpoint, served by uvicorn.

    pinsignal sandbox --port 8410 --token sandbox-token --account 549755885175
    PINTEREST_API_URL=http://127.0.0.1:8410 PINTEREST_ACCESS_TOKEN=sandbox-token pinsignal worker

Every option can also come from a ``PINSIGNAL_SANDBOX_<OPTION>`` variable (``PINSIGNAL_SANDBOX_PORT``,
``PINSIGNAL_SANDBOX_TOKENS=a,b``, ``PINSIGNAL_SANDBOX_ACCOUNTS=1,2``); command-line options win.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["configure", "run"]

logger = logging.getLogger("pinsignal.sandbox")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8410)")
    parser.add_argument("--token", dest="tokens", action="append", metavar="TOKEN",
                        help="an accepted access token; repeat for several (default: sandbox-token)")
    parser.add_argument("--account", dest="accounts", action="append", metavar="ID",
                        help="an ad account id that exists; repeat for several (default: any id); "
                             "others answer 403")
    parser.add_argument("--partial-failure", type=int, choices=[422, 200],
                        help="HTTP status when some events fail (default 422, DetailedError code 953)")
    parser.add_argument("--max-age-days", type=float, help="oldest accepted event_time, in days (default 7)")
    parser.add_argument("--calls-per-minute", type=int,
                        help="calls per minute per ad account before 429 (default 5000, Pinterest's limit)")
    parser.add_argument("--unknown-event-names", choices=["warn", "fail"],
                        help="unknown event_name: processed with a warning (default) or failed")
    parser.add_argument("--max-recorded", type=int, help="how many recent events to keep (default 200000)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pinsignal.sandbox import create_app
    from pinsignal.sandbox.settings import SandboxSettings

    settings = SandboxSettings.from_env(
        host=args.host,
        port=args.port,
        tokens=tuple(args.tokens) if args.tokens else None,
        accounts=tuple(args.accounts) if args.accounts else None,
        partial_failure=args.partial_failure,
        max_age_days=args.max_age_days,
        calls_per_minute=args.calls_per_minute,
        unknown_event_names=args.unknown_event_names,
        max_recorded=args.max_recorded,
    )
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    logger.info("sandbox listening on %s (set PINTEREST_API_URL=%s); %d token(s), accounts: %s",
                base, base, len(settings.tokens), ", ".join(settings.accounts) or "any")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the /_sandbox test API (reset, faults) has no authentication and is reachable on %s",
                       settings.host)
    # a call held by an injected delay must not hold up shutting down (the demo stops the sandbox)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                server_header=False, timeout_graceful_shutdown=1)
    return 0
