"""The example shop locks checkout, lead and sign-up to the server (docs/pipelines.md, "Sources")."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinsignal.config import Config, shipped_pipelines_dir
from pinsignal.demo import load_shop
from pinsignal.pipeline import Engine

pytestmark = pytest.mark.anyio

LOCKED = ("checkout.yaml", "lead.yaml", "signup.yaml")


@pytest.mark.parametrize("name", LOCKED)
def test_each_copy_is_the_shipped_file_plus_the_source_line(name: str) -> None:
    shop = load_shop()
    copy = (Path(shop.__file__).parent / "pipelines" / name).read_text().splitlines()
    shipped = (shipped_pipelines_dir() / name).read_text().splitlines()
    body = [line for line in copy if not line.startswith("# examples/shop/") and not line.startswith("# The shop")
            and not line.startswith("# equal to the shipped")]
    assert [line for line in body if line != "  source: server"] == shipped
    assert "  source: server" in body


def test_the_shop_loads_every_shipped_pipeline_with_three_locked() -> None:
    shop = load_shop()
    paths = shop.shop_pipelines()
    assert sorted(path.name for path in paths) == sorted(path.name for path in shipped_pipelines_dir().glob("*.yaml"))
    engine = Engine.from_config(Config(secret="s" * 20, pipelines=paths))
    locked = {pipeline.name for pipeline in engine.pipelines if pipeline.sources == frozenset({"server"})}
    assert locked == {"checkout", "lead", "signup"}


async def test_a_forged_browser_order_is_refused_and_the_shops_own_goes_out() -> None:
    import httpx

    from pinsignal import MemorySink

    shop = load_shop()
    sink = MemorySink()
    app = shop.create_app(Config(secret="shop-test-secret-0123456789"), sink=sink)
    forged = {"type": "track", "event": "order_completed", "message_id": "order-5001",
              "properties": {"revenue": 0.01, "order_id": "5001"}, "traits": {"email": "victim@example.com"}}
    browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as http:
        answer = await http.post("/_ps/e", json=forged, headers={"user-agent": browser})
    assert answer.status_code == 202
    [rejection] = answer.json()["rejected"]
    assert "only from a server source" in rejection["reasons"][0]
    assert sink.events == [] and sink.counters["refused_source"] == 1
