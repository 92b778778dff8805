"""DemoPay: the demo's stand-in payment provider, in its own process (``pinsignal demo`` starts it).

    python examples/shop/payments.py --port 8430 --shop http://127.0.0.1:8000

The shop's checkout sends the shopper to ``GET /pay/{order_id}?amount=...&currency=...``; "Pay" posts
back, and DemoPay confirms the payment to the shop the way Stripe, PayPal or Adyen do: a webhook
(``POST {shop}/webhooks/payment``) from its own server, with its own user agent, from another address
(127.0.0.2 where the loopback network allows it), signed with the secret the two share
(``DEMOPAY_SECRET``, HMAC-SHA256 of the body in ``DemoPay-Signature``). Then it sends the shopper back
to the shop's order page. The webhook request is not the shopper's: the shop's handler sends the
conversion with ``track(request, ..., visitor_key=order_id)`` (docs/webhooks.md).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import socket
import time
from html import escape
from urllib.parse import parse_qs, quote

WEBHOOK_USER_AGENT = "DemoPay-Webhooks/1.0 (+https://github.com/pinsignal; demo payment provider)"
SIGNATURE_HEADER = "DemoPay-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature the shop checks: HMAC-SHA256 of the raw body, hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_source() -> str | None:
    """Another loopback address to send the webhook from (a payment provider is not the shopper), if usable."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return None
    return "127.0.0.2"


def create_app(shop_url: str, secret: str):  # type: ignore[no-untyped-def]
    """The provider's pages: the payment page and its "Pay" post."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    source = webhook_source()
    shop_url = shop_url.rstrip("/")

    async def pay_page(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        amount = escape(request.query_params.get("amount", "?"))
        currency = escape(request.query_params.get("currency", ""))
        return HTMLResponse(f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>DemoPay</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
button{{background:#1a56db;color:#fff;border:0;border-radius:.4rem;padding:.6rem 1.4rem;font:inherit}}</style>
</head><body><h1>DemoPay</h1><p>Pay <b>{amount} {currency}</b> to Pinewood Home for order
<code>{escape(order_id)}</code>.</p><p>A simulated payment page on another origin, as Stripe Checkout or PayPal
would be. No card is needed.</p>
<form method="post"><input type="hidden" name="amount" value="{amount}">
<input type="hidden" name="currency" value="{currency}"><button id="pay">Pay</button></form></body></html>""")

    async def pay(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        event = {"type": "payment.succeeded", "id": f"pay_{int(time.time() * 1000)}", "order_id": order_id,
                 "amount": form.get("amount"), "currency": form.get("currency"), "created": int(time.time())}
        body = json.dumps(event).encode()
        transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            await client.post(f"{shop_url}/webhooks/payment", content=body, headers={
                "content-type": "application/json", "user-agent": WEBHOOK_USER_AGENT,
                SIGNATURE_HEADER: sign(secret, body)})
        return RedirectResponse(f"{shop_url}/order/{quote(order_id)}", status_code=303)

    return Starlette(routes=[Route("/pay/{order_id}", pay_page), Route("/pay/{order_id}", pay, methods=["POST"])])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="DemoPay, the demo's payment provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8430)
    parser.add_argument("--shop", required=True, help="the shop's base URL, where webhooks go")
    args = parser.parse_args()
    secret = os.environ.get("DEMOPAY_SECRET") or ""
    if len(secret) < 16:
        raise SystemExit("DemoPay needs DEMOPAY_SECRET (16 characters or more), shared with the shop.")
    uvicorn.run(create_app(args.shop, secret), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
