"""Worker settings for arq, and the metrics/health server, in-process."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import httpx
import pytest

from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.metrics import Metrics, MetricsServer


def test_worker_settings_come_from_the_environment_and_never_pickle(monkeypatch: pytest.MonkeyPatch,
                                                                    redis_url: str) -> None:
    worker = importlib.import_module("pinsignal.worker")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PINTEREST_AD_ACCOUNT_ID", "549755885175")
    monkeypatch.setenv("PINTEREST_ACCESS_TOKEN", "pina_test")
    settings: dict[str, Any] = worker.WorkerSettings
    assert settings["redis_settings"].unix_socket_path == redis_url.removeprefix("unix://")
    payload = {"a": [1, "x"]}
    assert settings["job_serializer"](payload) == b'{"a":[1,"x"]}'            # JSON, not pickle
    assert settings["job_deserializer"](settings["job_serializer"](payload)) == payload
    assert settings["keep_result"] == 0 and settings["cron_jobs"]
    with pytest.raises(ConfigError, match="PINTEREST_AD_ACCOUNT_ID and PINTEREST_ACCESS_TOKEN"):
        worker.worker_settings(Config(redis_url=redis_url))
    with pytest.raises(AttributeError):
        _ = worker.NoSuchThing


@pytest.mark.anyio
async def test_metrics_server_serves_metrics_and_health() -> None:
    metrics = Metrics()
    metrics.delivered.labels("549755885175", "checkout").inc(3)
    metrics.latency.observe(0.3, 1000)
    metrics.shared.paused = {"549755885175": "401"}
    healthy = [True, "ok"]
    server = await MetricsServer(metrics, 0, host="127.0.0.1",
                                 health=lambda: (bool(healthy[0]), str(healthy[1]))).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            text = (await client.get("/metrics")).text
            assert 'pinsignal_events_delivered_total{account="549755885175",event_name="checkout"} 3.0' in text
            assert 'pinsignal_delivery_latency_seconds_bucket{le="0.5"} 1000.0' in text
            assert 'pinsignal_delivery_latency_seconds_bucket{le="0.25"} 0.0' in text
            assert 'pinsignal_account_paused{account="549755885175",status="401"} 1.0' in text
            ok = await client.get("/healthz")
            assert (ok.status_code, ok.text) == (200, "ok\n")
            healthy[:] = [False, "Redis is unreachable"]
            bad = await client.get("/healthz")
            assert (bad.status_code, bad.text) == (503, "Redis is unreachable\n")
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
    finally:
        await server.close()
    await asyncio.sleep(0)
