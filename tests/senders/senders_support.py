"""The stack the real senders post to: a site wrapped by PinSignalMiddleware (real Redis queue, shipped
pipelines, a write key), the real ``pinsignal worker``, and the sandbox standing in for Pinterest.

The site also serves ``@segment/analytics-next``'s browser bundle (``dist/umd``, from the npm
registry into ``tests/senders/node_modules``) and a page that loads it with inline settings.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from pinsignal import Config, PinSignalMiddleware
from support import ROOT, ServerThread, need, pinsignal_cmd, run_process

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
BUNDLES = MODULES / "@segment" / "analytics-next" / "dist" / "umd"
WRITE_KEY = "sk-shop-backend-7f3a9c2e41d8b605"
SECRET = "senders-secret-0123456789abcdef"
EPIK = "dj0yJnU9U2VuZGVyVGVzdCZuPWJhciZtPWJheiZ0PUFBQUFBQQ"
SHOPPER_IP = "203.0.113.9"
SHOPPER_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.5 Mobile/15E148 Safari/604.1")
EMAIL = " Jane.Doe@Example.com "


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def node_modules() -> Path:
    """``tests/senders/node_modules``, installed from the npm registry (``npm ci``) when missing."""
    need(shutil.which("node") and shutil.which("npm"), "Node.js and npm (Debian packages nodejs npm)")
    if not (MODULES / "@segment" / "analytics-node").is_dir() or not BUNDLES.is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)
    return MODULES


def order_properties(order_id: str) -> dict[str, Any]:
    """A realistic order in Segment's e-commerce spec."""
    return {"order_id": order_id, "checkout_id": f"chk-{order_id}", "affiliation": "Web shop", "total": 272.5,
            "subtotal": 250.0, "revenue": 250.0, "shipping": 12.5, "tax": 10.0, "discount": 0, "coupon": "",
            "currency": "USD",
            "products": [{"product_id": "sku-linen-1", "sku": "LIN-1", "name": "Linen napkins", "price": 50.0,
                          "quantity": 3, "category": "Kitchen"},
                         {"product_id": "sku-mug-2", "sku": "MUG-2", "name": "Stoneware mug", "price": 25.0,
                          "quantity": 4, "category": "Kitchen"}]}


def visitor_context(order_id: str) -> dict[str, Any]:
    """What a site's server sends about the visitor (DESIGN 8.1): IP, user agent, page, the _epik it read."""
    return {"ip": SHOPPER_IP, "userAgent": SHOPPER_UA, "epik": EPIK,
            "page": {"url": f"https://shop.example/checkout/{order_id}", "referrer": "https://shop.example/cart"},
            "traits": {"email": EMAIL, "phone": "+1 (415) 555-0123"}}


def check_checkout(event: dict[str, Any], order_id: str, *, ip: str = SHOPPER_IP, user_agent: str = SHOPPER_UA,
                   click_id: str = EPIK) -> None:
    """One Pinterest checkout as the sandbox recorded it: keys normalised and hashed, order data, click id."""
    assert event["event_name"] == "checkout", event
    user = event["user_data"]
    assert user["em"] == [sha256("jane.doe@example.com")], user
    assert user["ph"] == [sha256("14155550123")], user
    assert user["external_id"] == [sha256("u-42")], user
    assert user["client_ip_address"] == ip and user["client_user_agent"] == user_agent, user
    assert user["click_id"] == click_id, user
    custom = event["custom_data"]
    assert custom["value"] == "250" and custom["currency"] == "USD", custom
    assert custom["order_id"] == order_id, custom
    assert custom["content_ids"] == ["sku-linen-1", "sku-mug-2"] and custom["num_items"] == 7, custom


@dataclass
class Stack:
    url: str
    sandbox: Any

    def checkouts(self, count: int) -> dict[str, dict[str, Any]]:
        """The first ``count`` checkouts the sandbox records, by order id."""
        found: dict[str, dict[str, Any]] = {}
        self.sandbox.wait_for_events(count, timeout=30)
        for record in self.sandbox.events():
            event = record["event"]
            if event["event_name"] == "checkout":
                found[event["custom_data"]["order_id"]] = event
        return found


def _page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>shop</title><p>analytics.js test page</p>")


def _bundle(request: Request) -> Response:
    name = request.path_params["name"]
    path = (BUNDLES / name).resolve()
    if path.parent != BUNDLES.resolve() or not path.is_file():
        return Response(status_code=404)
    return FileResponse(path, media_type="text/javascript")


def site(config: Config) -> PinSignalMiddleware:
    app = Starlette(routes=[Route("/", _page), Route("/checkout/{order}", _page),
                            Route("/ajs/{name}", _bundle)])
    return PinSignalMiddleware(app, config=config)


@contextmanager
def stack(sandbox: Any, redis_url: str, tmp_path: Path, port: int | None = None, **changes: Any) -> Iterator[Stack]:
    config = Config(secret=SECRET, redis_url=redis_url, ad_account_id=sandbox.account_id,
                    access_token=sandbox.token, api_url=sandbox.url, batch_max_wait=0.2,
                    write_keys=(f"shop-backend:{WRITE_KEY}",), **changes)
    worker_env = {"REDIS_URL": redis_url, "PINTEREST_AD_ACCOUNT_ID": sandbox.account_id,
                  "PINTEREST_ACCESS_TOKEN": sandbox.token, "PINTEREST_API_URL": sandbox.url,
                  "PINSIGNAL_BATCH_MAX_WAIT": "0.2", "PINSIGNAL_DATA_DIR": str(tmp_path),
                  "PYTHONPATH": str(ROOT / "middleware")}
    with ServerThread(site(config), port=port) as server, \
            run_process(pinsignal_cmd("worker"), env=worker_env, log=tmp_path / "worker.log"):
        yield Stack(server.url, sandbox)
