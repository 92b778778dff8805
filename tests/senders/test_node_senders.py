"""@segment/analytics-node, run by the machine's Node.js at its default settings, against /_ps/v1.

The package comes from the npm registry (``tests/senders/package.json`` and its lock, installed into
the git-ignored ``tests/senders/node_modules`` by ``.ci/run`` or, when missing, by this test).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from senders_support import HERE, WRITE_KEY, check_checkout, node_modules, order_properties, stack, visitor_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _node(host: str, key: str, orders: list[str]) -> dict[str, Any]:
    node_modules()
    properties = [order_properties(order_id) for order_id in orders]
    contexts = {order_id: visitor_context(order_id) for order_id in orders}
    done = subprocess.run(["node", str(HERE / "send_node.mjs"), host, "/_ps/v1/batch", key, json.dumps(properties),
                           json.dumps(contexts)], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_segment_analytics_node(sandbox_server: Any, redis_url: str, tmp_path: Path) -> None:
    with stack(sandbox_server, redis_url, tmp_path) as site:
        orders = [f"node-{n}" for n in range(40)]  # several of its 15-event batches
        result = _node(site.url, WRITE_KEY, orders)
        checkouts = site.checkouts(len(orders))
    assert result == {"errors": [], "delivered": len(orders)}
    assert sorted(checkouts) == sorted(orders)
    for order_id, event in checkouts.items():
        check_checkout(event, order_id)


def test_analytics_node_with_a_wrong_key_reports_the_401(sandbox_server: Any, redis_url: str,
                                                          tmp_path: Path) -> None:
    with stack(sandbox_server, redis_url, tmp_path) as site:
        result = _node(site.url, "wrong-key-0123456789abcdef", ["bad-1"])
    assert result["delivered"] == 0 and result["errors"], result
    assert sandbox_server.events() == []
