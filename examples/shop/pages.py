"""Server-rendered HTML for the shop: plain pages, one small script (pinsignal's collector), no framework JS.

Browser events are sent with ``pinsignal.track(...)`` from inline handlers; the collector script is
loaded with ``defer``, so calls made at ``DOMContentLoaded`` find it ready.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .catalog import CATEGORIES, CURRENCY, Product

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#fdfbf7}
header,main,footer{max-width:60rem;margin:auto;padding:0 1rem}
header{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;border-bottom:1px solid #ddd;padding:.5rem 1rem}
header a{color:#b60000;text-decoration:none}.brand{font-weight:700;margin-right:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:.5rem;padding:1rem;background:#fff}
button{background:#b60000;color:#fff;border:0;border-radius:1rem;padding:.4rem 1rem;cursor:pointer}
button.plain{background:#eee;color:#222}
input,textarea{font:inherit;padding:.3rem;margin:.2rem 0 .6rem;width:100%;max-width:24rem;display:block}
#consent{position:fixed;bottom:0;left:0;right:0;background:#222;color:#fff;padding:1rem;display:none}
#consent p{max-width:60rem;margin:0 auto .5rem}.note{color:#666;font-size:.9rem}
.player{width:100%;max-width:32rem;aspect-ratio:16/9;background:#333;color:#fff;display:grid;place-items:center}
"""


def js(value: Any) -> str:
    """A JSON literal safe to embed in an inline ``<script>`` (no ``</script>`` breakout)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def on_load(event: str, properties: dict[str, Any]) -> str:
    """A script that sends one browser event once the page has loaded."""
    return (
        "<script>document.addEventListener('DOMContentLoaded',function(){"
        f"pinsignal.track({js(event)},{js(properties)});}});</script>"
    )


def money(value: float) -> str:
    return f"${value:,.2f}"


def product_properties(product: Product, quantity: int = 1) -> dict[str, Any]:
    """Segment e-commerce spec properties of one product."""
    return {
        "product_id": product.id,
        "name": product.name,
        "category": CATEGORIES[product.category],
        "price": product.price,
        "quantity": quantity,
        "currency": CURRENCY,
    }


def layout(title: str, body: str, *, prefix: str, consent_mode: str, cart_count: int = 0,
           tag_id: str | None = None) -> str:
    """The page frame: navigation, the collector script (and the Pinterest Tag, with ``tag_id``), the consent banner."""
    nav = "".join(f'<a href="/category/{slug}">{escape(name)}</a>' for slug, name in CATEGORIES.items())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Pinewood Home</title>
<style>{_STYLE}</style>
<!-- pinsignal's collector: first-party, served by the middleware from this site's own origin.
     It sends a page view on load; pinsignal.track(...) sends anything else. -->
{pinterest_tag(tag_id) if tag_id else _TAG_MIGRATION_NOTE}
<script src="{escape(prefix)}/c.js" defer{" data-tag" if tag_id else ""}></script>
</head>
<body>
<header>
  <a class="brand" href="/">Pinewood Home</a>
  {nav}
  <form action="/search" method="get" style="display:flex;gap:.3rem">
    <input name="q" placeholder="Search" aria-label="Search" style="margin:0;width:9rem">
  </form>
  <a href="/video">Video</a> <a href="/contact">Contact</a> <a href="/signup">Sign up</a>
  <a href="/cart" id="cart-link">Cart ({cart_count})</a>
</header>
<main>
<h1>{escape(title)}</h1>
{body}
</main>
<footer><p class="note">A demo shop for pinsignal. Consent mode: <b>{escape(consent_mode)}</b>.
  <a href="#" id="consent-settings">Privacy choices</a></p></footer>
{consent_banner(consent_mode)}
</body>
</html>"""


def consent_banner(mode: str) -> str:
    """The banner: in ``opt-in`` mode nothing (not even a cookie) is sent before "Accept";
    in ``opt-out`` mode events flow unless the visitor declines."""
    if mode == "opt-in":
        text = ("We'd like to measure which Pinterest ads bring you here. Nothing is sent and no "
                "tracking cookie is set unless you accept.")
    else:
        text = ("We measure which Pinterest ads bring you here, with hashed identifiers sent from our "
                "own server. You can decline at any time.")
    return f"""<div id="consent" role="dialog" aria-label="Privacy choices">
  <p>{escape(text)}</p>
  <p><button id="consent-accept">Accept</button> <button id="consent-decline" class="plain">Decline</button></p>
</div>
<script>
(function () {{
  // The choice itself is stored by pinsignal (pinsignal.consent), which also tells the server;
  // the shop only remembers that the banner was answered.
  var banner = document.getElementById('consent');
  function answered() {{ return document.cookie.indexOf('shop_consent_answered=1') !== -1; }}
  function choose(granted) {{
    pinsignal.consent({{advertising: granted}});
    document.cookie = 'shop_consent_answered=1; Path=/; Max-Age=31536000; SameSite=Lax';
    banner.style.display = 'none';
  }}
  if (!answered()) banner.style.display = 'block';
  document.getElementById('consent-accept').onclick = function () {{ choose(true); }};
  document.getElementById('consent-decline').onclick = function () {{ choose(false); }};
  document.getElementById('consent-settings').onclick = function (e) {{
    e.preventDefault(); banner.style.display = 'block';
  }};
}})();
</script>"""


def pinterest_tag(tag_id: str) -> str:
    """The Pinterest Tag's base code (a queue until Pinterest's core.js arrives), for the migration switch.

    pinsignal's c.js, loaded after it with ``data-tag``, hands every browser event to ``pintrk``
    with the event id it sends to the server, so the page needs no ``pintrk('track', ...)`` of its own.
    """
    return f"""<!-- The Pinterest Tag, on while migrating (SHOP_PINTEREST_TAG_ID); see docs/migration.md. -->
<script>
  window.pintrk = window.pintrk || function () {{
    (window.pintrk.queue = window.pintrk.queue || []).push(Array.prototype.slice.call(arguments));
  }};
  pintrk('load', {js(tag_id)});
  pintrk('page');
</script>
<script async src="https://s.pinimg.com/ct/core.js"></script>"""


# Shown as an HTML comment when the Tag is off.
_TAG_MIGRATION_NOTE = """<!-- Migrating from the Pinterest Tag? Run it beside pinsignal for a while (docs/migration.md):
keep the Tag's base code, add data-tag to the c.js script tag (every browser event then also goes to
pintrk with the same event id), and fire the Tag for server conversions with tag_call(track(...)).
This shop does all of it with SHOP_PINTEREST_TAG_ID set. -->"""
