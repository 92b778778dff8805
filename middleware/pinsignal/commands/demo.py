"""``pinsignal demo``: the whole pipeline on one machine (:func:`pinsignal.demo.run_demo`).

    pinsignal demo                       # shop on :8000, sandbox on :8410, data in .pinsignal/
    pinsignal demo --port 9000 --sandbox-port 9410 --data-dir /tmp/ps-demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pinsignal.demo import DemoOptions, run_demo

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port of the example shop (default: %(default)s)")
    parser.add_argument("--sandbox-port", type=int, default=8410,
                        help="port of the local Pinterest sandbox (default: %(default)s)")
    parser.add_argument("--inspector-port", type=int, default=8420,
                        help="port of the inspector, the live page of every event (default: %(default)s)")
    parser.add_argument("--payments-port", type=int, default=8430,
                        help="port of DemoPay, the demo's payment page and webhook sender (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the embedded Redis and the demo secret live (default: PINSIGNAL_DATA_DIR "
                             "or .pinsignal)")
    parser.add_argument("--no-browser-hints", action="store_true",
                        help="print only the URLs, one per line, instead of the guided hints")


def run(args: argparse.Namespace) -> int:
    return run_demo(DemoOptions(host=args.host, port=args.port, sandbox_port=args.sandbox_port,
                                inspector_port=args.inspector_port, payments_port=args.payments_port,
                                data_dir=args.data_dir,
                                hints=not args.no_browser_hints,
                                log_level=args.log_level))
