"""Visitors remembered by key (DESIGN 8.2): the shopper's context, kept for a request that is not theirs.

    from pinsignal import remember

    @app.post("/checkout")
    async def checkout(request: Request):
        session = await payments.create_session(...)
        await remember(request, session.id)          # the browser: pinsignal.visitors(key)
        ...

    @app.post("/webhooks/payment")                  # the payment provider's request, not the shopper's
    async def paid(request: Request):
        await track(request, "order_completed", visitor_key=session_id, properties={...})

What is kept under the key: the click id (the landing's ``epik``, else the ``_epik`` cookie), the
hashed match keys ``identify()`` remembered (and any ``traits``/``user_id`` given here, hashed
first), the IP address, user agent and page URL, the device id, and the consent and Limited Data
Processing verdicts. Never a raw email, phone or name. A visitor without consent is remembered as
that verdict alone, so a later event for the key is refused for the same reason.

The context lives ``PINSIGNAL_REMEMBER_DAYS`` (7) days in Redis, beside the queue, under
``pinsignal:visitor:<HMAC of the key>``: the site's key (a cart token, an order id) is not readable
there either. Keys are 1-200 characters.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.cookies import DEVICE_COOKIE, EPIK_COOKIE, IDENTITY_COOKIE, epik_from_query, valid_epik

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from pinsignal.collector.intake import Intake, VisitorRequest

__all__ = ["MAX_KEY", "MemoryVisitors", "RedisVisitors", "VisitorContext", "Visitors", "capture", "check_key",
           "remember", "remember_post", "restore_visitors", "visitor_store"]

MAX_KEY = 200


@dataclass(slots=True)
class VisitorContext:
    """One visitor's context as remembered: hashed match keys only, never a raw value."""

    consent: str = "granted"  # the consent verdict when remembered: granted, refused, gpc, not_given
    click_id: str | None = None
    traits: dict[str, str] = field(default_factory=dict)  # trait name (and "user_id") -> SHA-256
    ip: str | None = None
    user_agent: str | None = None
    page_url: str | None = None
    device_id: str | None = None
    ldp: bool = False
    at: float = 0.0  # when it was remembered (epoch seconds)

    def dumps(self) -> bytes:
        return orjson.dumps({"c": self.consent, "k": self.click_id, "t": self.traits, "i": self.ip,
                             "u": self.user_agent, "p": self.page_url, "d": self.device_id, "l": self.ldp,
                             "a": self.at})

    @classmethod
    def loads(cls, data: bytes | str) -> VisitorContext | None:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if type(raw) is not dict:
            return None
        traits = raw.get("t")
        return cls(consent=str(raw.get("c", "granted")), click_id=_text(raw.get("k")),
                   traits={str(k): v for k, v in traits.items() if type(v) is str} if type(traits) is dict else {},
                   ip=_text(raw.get("i")), user_agent=_text(raw.get("u")), page_url=_text(raw.get("p")),
                   device_id=_text(raw.get("d")), ldp=raw.get("l") is True, at=float(raw.get("a") or 0.0))


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def check_key(key: object) -> str:
    """``key`` if it is a usable visitor key (1-200 characters), else ``ValueError`` with the reason."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"a visitor key must be a non-empty string (a cart token, a checkout session id), "
                         f"got {key!r}")
    if len(key) > MAX_KEY:
        raise ValueError(f"a visitor key must be at most {MAX_KEY} characters, got {len(key)}")
    return key


class Visitors(Protocol):
    """Where remembered contexts are kept: Redis (:class:`RedisVisitors`) or memory (:class:`MemoryVisitors`).

    ``get`` also counts the lookup (``visitor_key_found`` or ``visitor_key_unknown`` in the shared
    counters, exported as ``pinsignal_visitor_keys_total``).
    """

    async def put(self, key: str, context: VisitorContext) -> None: ...

    async def get(self, key: str) -> VisitorContext | None: ...

    async def close(self) -> None: ...


class _Keyed:
    def __init__(self, config: Config) -> None:
        self.ttl = max(1, int(config.remember_days * 86400))
        self._mac = hmac.new(config.require_secret().encode(), digestmod=hashlib.sha256)

    def token(self, key: str) -> str:
        """The stored name of a key: an HMAC, so Redis never shows the site's own tokens."""
        mac = self._mac.copy()
        mac.update(key.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()[:40]


class MemoryVisitors(_Keyed):
    """Contexts in a dict, expiring like Redis's; beside a ``MemorySink`` (tests, embedding), whose
    counters get the lookups."""

    def __init__(self, config: Config, sink: Any = None) -> None:
        super().__init__(config)
        self._items: dict[str, tuple[float, bytes]] = {}
        self.sink = sink

    async def put(self, key: str, context: VisitorContext) -> None:
        self._items[self.token(key)] = (time.time() + self.ttl, context.dumps())

    async def get(self, key: str) -> VisitorContext | None:
        found = self._items.get(self.token(key))
        if found is not None and found[0] < time.time():
            found = None
        if self.sink is not None:
            await self.sink.incr("visitor_key_found" if found is not None else "visitor_key_unknown")
        return None if found is None else VisitorContext.loads(found[1])

    async def close(self) -> None:
        return None


class RedisVisitors(_Keyed):
    """Contexts in Redis (``keys.visitor``), one ``SET ... EX`` each; connected at first use."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._config = config
        self._redis: Any = None  # a pinsignal.store client
        self._lock = asyncio.Lock()

    async def _client(self) -> Any:  # a pinsignal.store client
        if self._redis is None:
            async with self._lock:
                if self._redis is None:
                    from pinsignal import store

                    self._redis = await store.connect(self._config, socket_connect_timeout=5,
                                                      health_check_interval=30)
        return self._redis

    async def put(self, key: str, context: VisitorContext) -> None:
        from pinsignal.queue import unavailable

        client = await self._client()
        with unavailable("remembering a visitor"):
            await client.set(keys.visitor(self.token(key)), context.dumps(), ex=self.ttl)

    async def get(self, key: str) -> VisitorContext | None:
        from pinsignal.queue import unavailable

        client = await self._client()
        with unavailable("reading a remembered visitor"):
            # two calls, not one script: the context and the counters live in different cluster slots
            data = await client.get(keys.visitor(self.token(key)))
            await client.hincrby(keys.COUNTERS, "visitor_key_unknown" if data is None else "visitor_key_found", 1)
        return None if data is None else VisitorContext.loads(data)

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()


def visitor_store(config: Config, *, memory: bool, sink: Any = None) -> Visitors:
    """The store for an intake: memory beside a ``MemorySink`` (counting into it), else Redis (nothing
    connects until used). ``config`` must have a secret: it keys the stored names."""
    return MemoryVisitors(config, sink) if memory else RedisVisitors(config)


def capture(intake: Intake, visitor: VisitorRequest, *, page_url: str | None,
            traits: Mapping[str, Any] | None = None, user_id: object = None, ldp: bool | None = None) -> VisitorContext:
    """The context of the visitor making ``visitor``'s request, hashed (what :func:`remember` keeps)."""
    from pinsignal.collector.intake import identity_keys

    cookies = visitor.cookies
    verdict = intake.consent.verdict(gpc=visitor.gpc, cookies=cookies)
    now = time.time()
    if verdict != "granted":
        return VisitorContext(consent=verdict, at=now)
    click_id = visitor.epik
    if click_id is None and page_url and "epik=" in page_url:
        click_id = epik_from_query(page_url.partition("?")[2].partition("#")[0].encode("utf-8", "replace"))
    if click_id is None:
        cookie = cookies.get(EPIK_COOKIE)
        click_id = cookie if cookie is not None and valid_epik(cookie) else None
    hashed = intake.identity.loads(cookies.get(IDENTITY_COOKIE))
    if traits or user_id is not None:
        hashed.update(identity_keys(user_id, traits, default_country=intake.config.default_country))
    device_id, _ = intake.devices.read(cookies.get(DEVICE_COOKIE))
    flagged = bool(ldp) or intake.ldp.for_request(gpc=visitor.gpc, cookies=cookies)
    return VisitorContext(consent=verdict, click_id=click_id, traits=hashed, ip=visitor.ip,
                          user_agent=visitor.user_agent, page_url=page_url, device_id=device_id, ldp=flagged, at=now)


async def remember(request: HTTPConnection, key: str, *, traits: Mapping[str, Any] | None = None,
                   user_id: str | None = None, ldp: bool | None = None) -> bool:
    """Keep the visitor's context under ``key`` for ``PINSIGNAL_REMEMBER_DAYS``; ``True`` when it was kept.

    ``traits`` and ``user_id`` (raw) are hashed before anything is stored; ``ldp=True`` flags every
    event later sent for the key for Limited Data Processing. ``False`` means the visitor has not
    consented: only that verdict is kept, and events for the key are refused for it. Raises
    ``ValueError`` for an empty or over-long key, and :class:`~pinsignal.errors.QueueUnavailable`
    when Redis cannot be reached.

        await remember(request, cart.token)
        await remember(request, session.id, traits={"email": form["email"]}, ldp=True)
    """
    from pinsignal.asgi import RequestHook

    check_key(key)
    hook = RequestHook.of(request.scope)
    if hook is None:
        raise RuntimeError("pinsignal found no PinSignalMiddleware around this app; add it with "
                           "app.add_middleware(PinSignalMiddleware) before calling remember().")
    visitor = hook.visitor()
    # a page's own request is the page; a form post or fetch comes from the page in Referer
    page_url = str(request.url) if request.scope.get("method") == "GET" else visitor.referer or str(request.url)
    context = capture(hook.intake, visitor, page_url=page_url, traits=traits, user_id=user_id, ldp=ldp)
    await hook.intake.visitors.put(key, context)
    return context.consent == "granted"


async def remember_post(intake: Intake, payload: object, visitor: VisitorRequest) -> dict[str, Any]:
    """``POST {prefix}/remember`` with ``{"key": "...", "ldp": true}`` (``pinsignal.remember(key)``):
    the answer's body. The page is the request's ``Referer``. ``ValueError`` for a bad body."""
    if type(payload) is not dict:
        raise ValueError("a remember body must be {\"key\": \"...\"} (a cart token, a checkout session id)")
    key = check_key(payload.get("key"))
    ldp = payload.get("ldp", False)
    if type(ldp) is not bool:
        raise ValueError(f"ldp must be true or false, got {ldp!r}")
    context = capture(intake, visitor, page_url=visitor.referer, ldp=ldp)
    await intake.visitors.put(key, context)
    if context.consent != "granted":
        return {"remembered": False, "reason": f"no consent ({context.consent}); only that verdict is kept"}
    return {"remembered": True}


async def restore_visitors(intake: Intake, raws: Sequence[object]) -> tuple[list[object], list[str]]:
    """A server source's events with ``context.visitor_key`` (DESIGN 8.1), the remembered context filled in.

    What the event already says wins (the site sent it); the rest comes from the key: ``ip``,
    ``userAgent``, ``page.url``, ``epik`` (the click id), the hashed traits and user id, the device id
    as ``anonymous_id``, the LDP flag, and a refused consent (so the event is refused for it). Returns
    the events and the keys that were unknown or expired (those events go out with what they have).
    """
    out: list[object] = []
    unknown: list[str] = []
    for raw in raws:
        context = raw.get("context") if type(raw) is dict else None
        key = context.get("visitor_key") if type(context) is dict else None
        if type(key) is not str or not key or len(key) > MAX_KEY:
            out.append(raw)
            continue
        assert type(raw) is dict and type(context) is dict
        remembered = await intake.visitors.get(key)
        if remembered is None:
            unknown.append(key)
            out.append(raw)
            continue
        out.append(_filled(raw, context, remembered))
    return out, unknown


def _filled(raw: dict[str, Any], context: dict[str, Any], remembered: VisitorContext) -> dict[str, Any]:
    event = dict(raw)
    filled = dict(context)
    if remembered.consent != "granted":
        filled["consent"] = {"advertising": False}
    for name, value in (("ip", remembered.ip), ("userAgent", remembered.user_agent), ("epik", remembered.click_id)):
        if value is not None and not filled.get(name):
            filled[name] = value
    page = filled.get("page")
    if remembered.page_url and (type(page) is not dict or not page.get("url")):
        filled["page"] = {**(page if type(page) is dict else {}), "url": remembered.page_url}
    if remembered.ldp:
        filled["limited_data_processing"] = True
    event["context"] = filled
    lend_identity(event, remembered)
    return event


def lend_identity(event: dict[str, Any], remembered: VisitorContext) -> None:
    """The remembered hashed traits, user id and device id (as ``anonymous_id``) on a raw event, where it
    says nothing itself (digests: the pipelines pass them through unchanged)."""
    traits = event.get("traits")
    traits = dict(traits) if type(traits) is dict else {}
    for name, digest in remembered.traits.items():
        if name == "user_id":
            if not event.get("user_id") and not event.get("userId"):
                event["user_id"] = digest
        elif not traits.get(name):
            traits[name] = digest
    event["traits"] = traits
    if remembered.device_id and not event.get("anonymous_id") and not event.get("anonymousId"):
        event["anonymous_id"] = remembered.device_id
