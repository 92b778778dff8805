"""``pinsignal worker``: the arq delivery worker for the configured ad account."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=4, metavar="N",
                        help="delivery loops in this process (default 4)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve /metrics and /healthz on this port (default PINSIGNAL_METRICS_PORT; "
                             "none when unset; 0 picks a free port)")
    parser.add_argument("--metrics-host", default=None, metavar="ADDRESS",
                        help="address of the metrics server (default PINSIGNAL_METRICS_HOST; else 127.0.0.1, "
                             "or 0.0.0.0 in a container)")
    parser.add_argument("--reclaim-after", type=float, default=5.0, metavar="SECONDS",
                        help="take over a dead worker's events after they sat idle this long (default 5)")
    parser.add_argument("--probe-interval", type=float, default=5.0, metavar="SECONDS",
                        help="while an account is paused (401/403), try it again this often (default 5)")
    parser.add_argument("--calls-per-minute", type=int, default=None, metavar="N",
                        help="shared rate limit per ad account (default 4800; Pinterest allows 5000)")


def run(args: argparse.Namespace) -> int:
    from pinsignal.config import Config
    from pinsignal.errors import ConfigError
    from pinsignal.worker import run as run_worker, worker_settings

    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency}.")
    if args.reclaim_after <= 0 or args.probe_interval <= 0:
        raise ConfigError("--reclaim-after and --probe-interval must be positive numbers of seconds.")
    config = Config.from_env()
    if args.metrics_host is not None:
        config = config.with_(metrics_host=args.metrics_host)
    settings = worker_settings(config, concurrency=args.concurrency, metrics_port=args.metrics_port,
                               reclaim_after=args.reclaim_after, probe_interval=args.probe_interval,
                               calls_per_minute=args.calls_per_minute)
    logging_quiet()
    use_uvloop()
    run_worker(settings)
    return 0


def use_uvloop() -> None:
    # arq takes whatever loop asyncio gives it; uvloop (installed with uvicorn[standard]) makes the
    # worker's socket work noticeably cheaper. Without it the default loop is fine.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not available on every platform
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def logging_quiet() -> None:
    import logging

    # httpx logs every request at INFO: at thousands of batches a minute that drowns the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
