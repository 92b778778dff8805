"""Unknown visitor keys are counted in every process and exported by the worker (pinsignal_visitor_keys_total)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from pinsignal.insight import InsightMetrics, refresh_insight


class _Redis:
    async def zcard(self, name: str) -> int:
        return 0


def test_the_worker_exports_visitor_key_counts() -> None:
    registry = CollectorRegistry()
    insight = InsightMetrics(registry)
    text = generate_latest(registry).decode()
    assert 'pinsignal_visitor_keys_total{found="false"} 0.0' in text
    asyncio.run(refresh_insight(_Redis(), insight, {"visitor_key_found": 7, "visitor_key_unknown": 2}, []))
    text = generate_latest(registry).decode()
    assert 'pinsignal_visitor_keys_total{found="true"} 7.0' in text
    assert 'pinsignal_visitor_keys_total{found="false"} 2.0' in text
