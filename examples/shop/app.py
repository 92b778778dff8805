"""Pinewood Home: a small FastAPI shop wrapped with pinsignal, exercising every standard event.

| page                  | event (Segment spec name)   | Pinterest event    | sent from          |
|-----------------------|-----------------------------|--------------------|--------------------|
| every page            | page view (automatic)       | page_visit         | browser (c.js)     |
| /category/{slug}      | product_list_viewed         | view_category      | browser            |
| /search?q=            | products_searched           | search             | browser            |
| /product/{id}         | product_viewed              | view_content       | browser            |
| "Add to cart"         | product_added               | add_to_cart        | browser            |
| "Save for later"      | product_added_to_wishlist   | add_to_wishlist    | browser            |
| /cart                 | checkout_started            | initiate_checkout  | browser            |
| POST /checkout        | order_completed             | checkout           | server, track()    |
| (DemoPay's webhook)   | order_completed             | checkout           | server, visitor_key|
| POST /signup          | signed_up (+ identify())    | signup             | server, track()    |
| POST /contact         | lead_generated              | lead               | server, track()    |
| /video "Play"         | video_playback_started      | watch_video        | browser            |
| "Care guide"          | care_guide_opened           | custom             | browser            |

Run it with ``pinsignal demo`` (embedded Redis, worker and sandbox included), or on its own with
``uvicorn --factory examples.shop:create_app`` and the environment of DESIGN 2.3.

The payment path: with ``SHOP_PAYMENTS_URL`` (or ``create_app(payments_url=...)``), as ``pinsignal demo``
runs it, the checkout remembers the shopper (``remember(request, order_id)``) and sends them to DemoPay's
payment page (``payments.py``, its own process); DemoPay confirms the payment with a signed webhook to
``/webhooks/payment`` from another address and user agent, and that handler sends the conversion with
``track(request, ..., visitor_key=order_id)``: the shopper's click id, IP and user agent, not DemoPay's
(docs/webhooks.md). Without it, the checkout sends the order at once.

The migration switch: ``SHOP_PINTEREST_TAG_ID`` (or ``create_app(tag_id=...)``) puts the Pinterest
Tag on every page beside pinsignal, as a site does while it migrates (docs/migration.md). c.js then
runs in Tag companion mode (``data-tag``): every browser event also goes to ``pintrk`` with the same
event id. The order and enquiry pages fire the Tag for the conversion ``track()`` sent from the
server, with ``tag_call(result)``.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pinsignal import TagCall, identify, remember, tag_call, track
from pinsignal.asgi import PinSignalMiddleware
from pinsignal.config import Config, shipped_pipelines_dir
from pinsignal.pipeline import pipeline_files

from . import catalog
from .pages import js, layout, money, on_load, product_properties
from .payments import SIGNATURE_HEADER, sign

CART_COOKIE = "cart"
SERVER_ONLY = Path(__file__).resolve().parent / "pipelines"
"""The shop's checkout, lead and sign-up pipelines: the shipped ones with ``trigger.source: server``."""


def shop_pipelines() -> tuple[Path, ...]:
    """The shipped pipelines, with checkout, lead and signup replaced by the shop's server-only copies.

    The shop sends those three with ``track()`` from its handlers, so no browser (or ``curl``) may
    send them: docs/pipelines.md, "Sources".
    """
    locked = pipeline_files([SERVER_ONLY])
    names = {path.name for path in locked}
    return (*(path for path in pipeline_files([shipped_pipelines_dir()]) if path.name not in names), *locked)


def create_app(config: Config | None = None, *, tag_id: str | None = None, payments_url: str | None = None,
               payments_secret: str | None = None, **middleware_options: Any) -> FastAPI:
    """The shop, wrapped with :class:`PinSignalMiddleware` (settings from ``config`` or the environment).

    ``tag_id`` (default ``SHOP_PINTEREST_TAG_ID``) switches the Pinterest Tag on beside pinsignal.
    ``payments_url`` (default ``SHOP_PAYMENTS_URL``) sends the checkout through DemoPay's payment page,
    whose webhook is checked with ``payments_secret`` (default ``DEMOPAY_SECRET``).
    ``middleware_options`` go to the middleware as they are (tests pass ``sink=MemorySink()``).
    """
    config = config or Config.from_env()
    if not config.pipelines:  # a site's own PINSIGNAL_PIPELINES wins
        config = config.with_(pipelines=shop_pipelines())
    tag_id = tag_id if tag_id is not None else os.environ.get("SHOP_PINTEREST_TAG_ID") or None
    payments_url = (payments_url or os.environ.get("SHOP_PAYMENTS_URL") or "").rstrip("/") or None
    payments_secret = payments_secret or os.environ.get("DEMOPAY_SECRET") or ""
    app = FastAPI(title="Pinewood Home", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(PinSignalMiddleware, config=config, **middleware_options)
    orders: dict[str, dict[str, Any]] = {}
    tag_calls: dict[str, TagCall] = {}  # order id -> the Tag's call for the checkout the server sent

    def page(request: Request, title: str, body: str, status_code: int = 200) -> HTMLResponse:
        count = sum(catalog.parse_cart(request.cookies.get(CART_COOKIE)).values())
        html = layout(title, body, prefix=config.collector_prefix, consent_mode=config.consent, cart_count=count,
                      tag_id=tag_id)
        return HTMLResponse(html, status_code=status_code)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        cards = "".join(_card(p) for p in catalog.PRODUCTS.values())
        body = f"""<p>Homewares chosen slowly. Every page view here reaches Pinterest as <code>page_visit</code>,
        from this server, with no Pinterest JavaScript on the page.</p><div class="grid">{cards}</div>"""
        return page(request, "Pinewood Home", body)

    @app.get("/category/{slug}", response_class=HTMLResponse)
    async def category(request: Request, slug: str) -> HTMLResponse:
        if slug not in catalog.CATEGORIES:
            return page(request, "Not found", "<p>No such category.</p>", 404)
        products = catalog.in_category(slug)
        props = {"list_id": slug, "category": catalog.CATEGORIES[slug],
                 "products": [product_properties(p) for p in products]}
        body = f'<div class="grid">{"".join(_card(p) for p in products)}</div>' + on_load("product_list_viewed", props)
        return page(request, catalog.CATEGORIES[slug], body)

    @app.get("/search", response_class=HTMLResponse)
    async def search(request: Request, q: str = "") -> HTMLResponse:
        found = catalog.search(q)
        results = "".join(_card(p) for p in found) or "<p>Nothing matched; try <a href='/search?q=linen'>linen</a>.</p>"
        body = f'<p>{len(found)} result(s) for “{escape(q)}”.</p><div class="grid">{results}</div>'
        if q.strip():
            body += on_load("products_searched", {"query": q.strip()})
        return page(request, "Search", body)

    @app.get("/product/{product_id}", response_class=HTMLResponse)
    async def product(request: Request, product_id: str) -> HTMLResponse:
        item = catalog.PRODUCTS.get(product_id)
        if item is None:
            return page(request, "Not found", "<p>No such product.</p>", 404)
        props = product_properties(item)
        body = f"""<p>{escape(item.blurb)}</p><p><b>{money(item.price)}</b></p>
<form id="add" action="/cart/add" method="post">
  <input type="hidden" name="sku" value="{escape(item.id)}">
  <label>Quantity <input name="quantity" type="number" value="1" min="1" max="9"></label>
  <button id="add-to-cart">Add to cart</button>
  <button type="button" id="wishlist" class="plain">Save for later</button>
  <button type="button" id="care-guide" class="plain">Care guide</button>
</form>
<p id="added" class="note" hidden>Added. <a href="/cart">Go to the cart</a>.</p>
<p id="guide" class="note" hidden>Wipe clean; keep out of direct sun.</p>
<script>
(function () {{
  var product = {js(props)};
  var form = document.getElementById('add');
  form.onsubmit = function (e) {{
    // Browser event, then the cart update without leaving the page.
    e.preventDefault();
    product.quantity = parseInt(form.quantity.value, 10) || 1;
    pinsignal.track('product_added', product);
    fetch('/cart/add', {{method: 'POST', body: new URLSearchParams(new FormData(form))}})
      .then(function (r) {{ return r.json(); }})
      .then(function (cart) {{
        document.getElementById('cart-link').textContent = 'Cart (' + cart.count + ')';
        document.getElementById('added').hidden = false;
      }});
  }};
  document.getElementById('wishlist').onclick = function () {{
    pinsignal.track('product_added_to_wishlist', product);
  }};
  document.getElementById('care-guide').onclick = function () {{
    // Not a standard event: pinterest_custom asks the shipped "custom" pipeline to send it to
    // Pinterest as event_name=custom (unmarked unknown events are never sent).
    pinsignal.track('care_guide_opened', {{product_id: product.product_id, pinterest_custom: true}});
    document.getElementById('guide').hidden = false;
  }};
}})();
</script>""" + on_load("product_viewed", props)
        return page(request, item.name, body)

    @app.post("/cart/add")
    async def cart_add(request: Request) -> Response:
        form = await _form(request)
        cart = catalog.parse_cart(request.cookies.get(CART_COOKIE))
        sku = form.get("sku", "")
        quantity = int(form["quantity"]) if form.get("quantity", "").isdigit() else 1
        if sku in catalog.PRODUCTS:
            cart[sku] = min(cart.get(sku, 0) + max(quantity, 1), 99)
        wants_html = "text/html" in request.headers.get("accept", "")
        response: Response = (RedirectResponse("/cart", status_code=303) if wants_html
                              else Response(js({"count": sum(cart.values())}), media_type="application/json"))
        response.set_cookie(CART_COOKIE, catalog.format_cart(cart), max_age=7 * 86400, samesite="lax", httponly=True)
        return response

    @app.get("/cart", response_class=HTMLResponse)
    async def cart_page(request: Request) -> HTMLResponse:
        cart = catalog.parse_cart(request.cookies.get(CART_COOKIE))
        if not cart:
            return page(request, "Your cart", "<p>The cart is empty. <a href='/'>Keep looking</a>.</p>")
        lines = "".join(f"<li>{qty} × {escape(p.name)} — {money(p.price * qty)}</li>"
                        for p, qty in catalog.cart_lines(cart))
        total = catalog.cart_total(cart)
        props = {"value": total, "revenue": total, "currency": catalog.CURRENCY,
                 "products": [product_properties(p, qty) for p, qty in catalog.cart_lines(cart)]}
        body = f"""<ul>{lines}</ul><p>Total: <b>{money(total)}</b></p>
<form action="/checkout" method="post">
  <label>Email <input name="email" type="email" required autocomplete="email"></label>
  <label>Phone (optional) <input name="phone" type="tel" autocomplete="tel"></label>
  <button id="place-order">Place order</button>
</form>
<p class="note">The order is sent to Pinterest from the server when you place it: the email and phone
are normalised and SHA-256 hashed before they are queued; the raw values never leave this server.</p>
""" + on_load("checkout_started", props)
        return page(request, "Your cart", body)

    @app.post("/checkout")
    async def checkout(request: Request) -> Response:
        form = await _form(request)
        cart = catalog.parse_cart(request.cookies.get(CART_COOKIE))
        if not cart or not form.get("email"):
            return RedirectResponse("/cart", status_code=303)
        order_id = secrets.token_hex(4)
        lines = catalog.cart_lines(cart)
        properties = {
            "order_id": order_id,
            "revenue": catalog.cart_total(cart),
            "currency": catalog.CURRENCY,
            "quantity": sum(qty for _, qty in lines),
            "products": [product_properties(p, qty) for p, qty in lines],
        }
        traits = {"email": form["email"]}
        if form.get("phone"):
            traits["phone"] = form["phone"]
        if payments_url:
            # Paid on DemoPay's page; its webhook confirms the order from DemoPay's own server. The shopper's
            # context (click id, IP, user agent, the email hashed) is kept under the order id until then.
            await remember(request, order_id, traits=traits)
            orders[order_id] = {**properties, "status": "pending"}
            response = RedirectResponse(f"{payments_url}/pay/{order_id}?amount={properties['revenue']:.2f}"
                                        f"&currency={catalog.CURRENCY}", status_code=303)
            response.delete_cookie(CART_COOKIE)
            return response
        # The conversion goes server-side: no ad blocker or closed tab can lose it. The event id is
        # derived from the order id, so a retry, a reload or the Pinterest Tag (during a migration)
        # reporting the same order is counted once.
        result = await track(request, "order_completed", properties=properties, traits=traits,
                             message_id=f"order-{order_id}")
        orders[order_id] = properties
        if tag_id:
            tag_calls[order_id] = tag_call(result)
        response = RedirectResponse(f"/order/{order_id}", status_code=303)
        response.delete_cookie(CART_COOKIE)
        return response

    @app.post("/webhooks/payment")
    async def payment_webhook(request: Request) -> Response:
        # DemoPay's request, not the shopper's: its IP and user agent are DemoPay's own.
        body = await request.body()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not payments_secret or not hmac.compare_digest(signature, sign(payments_secret, body)):
            return Response(js({"error": "bad signature"}), status_code=401, media_type="application/json")
        event = json.loads(body)
        order_id = str(event.get("order_id", ""))
        placed = orders.get(order_id)
        if placed is None:
            return Response(js({"error": "no such order"}), status_code=404, media_type="application/json")
        if event.get("type") == "payment.succeeded" and placed.get("status") == "pending":
            properties = {key: value for key, value in placed.items() if key != "status"}
            result = await track(request, "order_completed", visitor_key=order_id, properties=properties,
                                 message_id=f"order-{order_id}", timestamp=event.get("created"))
            placed["status"] = "paid"
            if tag_id:
                tag_calls[order_id] = tag_call(result)
        return Response(js({"received": True}), media_type="application/json")

    @app.get("/order/{order_id}", response_class=HTMLResponse)
    async def order(request: Request, order_id: str) -> HTMLResponse:
        placed = orders.get(order_id)
        if placed is None:
            return page(request, "Not found", "<p>No such order.</p>", 404)
        if placed.get("status") == "pending":
            return HTMLResponse(layout("Waiting for the payment", f"""<meta http-equiv="refresh" content="1">
<p>Waiting for DemoPay to confirm the payment of order <b id="pending-order">{escape(order_id)}</b>…</p>""",
                                       prefix=config.collector_prefix, consent_mode=config.consent, cart_count=0,
                                       tag_id=tag_id))
        body = f"""<p>Thank you! Order <b id="order-id">{escape(order_id)}</b>, {money(placed['revenue'])}.</p>
<p class="note">Sent to Pinterest as <code>checkout</code> with event id
<code id="event-id">order-{escape(order_id)}</code>{_confirmed(placed)}.</p>
{tag_calls.get(order_id, "")}"""
        return page(request, "Order placed", body)

    @app.get("/signup", response_class=HTMLResponse)
    async def signup_form(request: Request) -> HTMLResponse:
        body = """<form action="/signup" method="post">
  <label>Name <input name="name" autocomplete="name"></label>
  <label>Email <input name="email" type="email" required autocomplete="email"></label>
  <button id="sign-up">Create account</button>
</form>"""
        return page(request, "Create an account", body)

    @app.post("/signup")
    async def signup(request: Request) -> Response:
        form = await _form(request)
        if not form.get("email"):
            return RedirectResponse("/signup", status_code=303)
        user_id = f"u-{secrets.token_hex(4)}"
        traits = {"email": form["email"]}
        if form.get("name"):
            traits["first_name"] = form["name"].split()[0]
        # identify() keeps the *hashed* match keys in a signed first-party cookie, so this browser's
        # later anonymous events (page views, add to cart...) carry them too.
        identify(request, user_id=user_id, traits=traits)
        await track(request, "signed_up", traits=traits, user_id=user_id, message_id=f"signup-{user_id}")
        return RedirectResponse("/?welcome=1", status_code=303)

    @app.get("/contact", response_class=HTMLResponse)
    async def contact_form(request: Request) -> HTMLResponse:
        body = """<p>Furnishing a café or a shop? Tell us and we'll call you back.</p>
<form action="/contact" method="post">
  <label>Email <input name="email" type="email" required></label>
  <label>Phone <input name="phone" type="tel"></label>
  <label>Message <textarea name="message" rows="3"></textarea></label>
  <button id="send-lead">Send</button>
</form>"""
        return page(request, "Trade enquiries", body)

    @app.post("/contact", response_class=HTMLResponse)
    async def contact(request: Request) -> HTMLResponse:
        form = await _form(request)
        traits = {k: form[k] for k in ("email", "phone") if form.get(k)}
        lead_id = secrets.token_hex(4)
        # The message text stays here: only what a pipeline maps (hashed match keys) is sent.
        result = await track(request, "lead_generated", properties={"lead_id": lead_id, "form": "trade"},
                             traits=traits, message_id=f"lead-{lead_id}")
        # With the Tag on the page, it reports the same lead with the same id (nothing without the switch).
        fire = tag_call(result) if tag_id else ""
        return page(request, "Thanks", f"<p>We'll be in touch within a working day.</p>{fire}")

    @app.get("/video", response_class=HTMLResponse)
    async def video(request: Request) -> HTMLResponse:
        props = {"video_id": "lookbook-autumn", "title": "Autumn lookbook", "total_length": 94}
        body = f"""<div class="player" id="player"><button id="play">▶ Play the autumn lookbook</button></div>
<p class="note">A real site hooks its player's play event the same way.</p>
<script>
document.getElementById('play').onclick = function () {{
  pinsignal.track('video_playback_started', {js(props)});
  document.getElementById('player').textContent = 'Playing… (imagine linen curtains in the wind)';
}};
</script>"""
        return page(request, "Video", body)

    return app


def _confirmed(order: dict[str, Any]) -> str:
    if order.get("status") != "paid":
        return ""
    return (", from DemoPay's payment webhook with the click id, IP address and user agent this browser had "
            "at checkout (remembered under the order id)")


def _card(product: catalog.Product) -> str:
    return (f'<div class="card"><a href="/product/{escape(product.id)}">{escape(product.name)}</a>'
            f'<p class="note">{escape(product.blurb)}</p><b>{money(product.price)}</b></div>')


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (kept dependency-free: no python-multipart needed)."""
    body = (await request.body())[:16384].decode("utf-8", "replace")
    return {key: values[0].strip() for key, values in parse_qs(body).items()}
