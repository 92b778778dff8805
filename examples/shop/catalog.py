"""The shop's products: a fixed catalogue, so the demo needs no database."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float
    blurb: str


CATEGORIES: dict[str, str] = {
    "kitchen": "Kitchen",
    "garden": "Garden",
    "living": "Living room",
}

PRODUCTS: dict[str, Product] = {
    p.id: p
    for p in (
        Product("sku-101", "Speckled stoneware mug", "kitchen", 14.99, "Hand-glazed, holds 350 ml."),
        Product("sku-102", "Walnut serving board", "kitchen", 42.50, "One piece of oiled walnut."),
        Product("sku-103", "Linen tea towels (set of 3)", "kitchen", 19.00, "Stonewashed Baltic linen."),
        Product("sku-201", "Terracotta planter", "garden", 24.00, "Unglazed, with a drainage hole."),
        Product("sku-202", "Brass plant mister", "garden", 29.90, "Fine mist, 250 ml."),
        Product("sku-301", "Wool throw blanket", "living", 89.00, "Undyed merino, 130 x 170 cm."),
        Product("sku-302", "Rattan pendant shade", "living", 64.00, "Hand-woven, 40 cm across."),
    )
}

CURRENCY = "USD"


def in_category(slug: str) -> list[Product]:
    return [p for p in PRODUCTS.values() if p.category == slug]


def search(query: str) -> list[Product]:
    words = query.lower().split()
    return [p for p in PRODUCTS.values() if words and all(w in f"{p.name} {p.blurb}".lower() for w in words)]


def parse_cart(raw: str | None) -> dict[str, int]:
    """The cart cookie, ``sku-101:2,sku-201:1``; unknown or malformed entries are dropped."""
    cart: dict[str, int] = {}
    for part in (raw or "").split(","):
        sku, _, qty = part.partition(":")
        if sku in PRODUCTS and qty.isdigit() and 0 < int(qty) < 100:
            cart[sku] = int(qty)
    return cart


def format_cart(cart: dict[str, int]) -> str:
    return ",".join(f"{sku}:{qty}" for sku, qty in cart.items())


def cart_lines(cart: dict[str, int]) -> list[tuple[Product, int]]:
    return [(PRODUCTS[sku], qty) for sku, qty in cart.items() if sku in PRODUCTS]


def cart_total(cart: dict[str, int]) -> float:
    return round(sum(p.price * qty for p, qty in cart_lines(cart)), 2)
