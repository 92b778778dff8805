"""From raw incoming events to queued Pinterest events: the path shared by the collector and ``track()``.

For each raw event: refuse crawlers and events without consent (both counted), let the server fill
``context.ip`` and ``context.userAgent`` (from the request, never the body) and the page URL (body,
else ``Referer``), parse the envelope (clock skew corrected), add the hashed keys remembered by
``identify()`` and the device id, run the pipelines with the cookies they ask for, then enqueue
every valid Pinterest event in one call. Identify events also refresh the ``_psu`` cookie.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import cookie_parser
from starlette.types import Scope

from pinsignal.accounts import Accounts
from pinsignal.bots import BotFilter
from pinsignal.clientip import TrustedProxies
from pinsignal.config import Config
from pinsignal.consent import ConsentPolicy
from pinsignal.cookies import (
    DEVICE_COOKIE,
    EPIK_COOKIE,
    IDENTITY_COOKIE,
    CookieDomain,
    CookieWriter,
    DeviceIds,
    IdentityCookie,
    epik_from_query,
    valid_epik,
)
from pinsignal.errors import EnvelopeError
from pinsignal.events import parse_envelope
from pinsignal.ldp import LdpPolicy, flag_ldp
from pinsignal.pinterest.fields import IDENTITY_TRAITS
from pinsignal.pipeline import RequestContext
from pinsignal.queue import EnqueueResult
from pinsignal.trace import DEBUG_COOKIE, valid_debug_code
from pinsignal.visitors import restore_visitors, visitor_store

from .observer import MemoryObserver, Observer, RedisObserver, RequestObserver
from .quota import ClientQuota
from .sink import MemorySink, QueueSink, Sink

if TYPE_CHECKING:
    from pinsignal.pipeline import Engine, Produced
    from pinsignal.sources import Source

__all__ = ["Intake", "IntakeResult", "VisitorRequest", "identity_keys"]

logger = logging.getLogger("pinsignal.collector")

# identify() traits come from the v5 field table (IDENTITY_TRAITS: trait -> the Pinterest field whose
# normalisation applies). Segment's camelCase and address sub-object are folded into those names,
# which is what the shipped pipelines read.
_TRAIT_ALIASES = {
    "firstName": "first_name", "lastName": "last_name", "postal_code": "zip", "postalCode": "zip",
    "phone_number": "phone", "phoneNumber": "phone", "date_of_birth": "birthday", "dob": "birthday",
}
_ADDRESS_KEYS = {"city": "city", "state": "state", "postal_code": "zip", "postalCode": "zip", "zip": "zip",
                 "country": "country"}


@dataclass(slots=True)
class VisitorRequest:
    """The visitor's request as the intake reads it, once, from the ASGI scope: address, headers, cookies."""

    ip: str | None
    scheme: str
    host: bytes | None = None
    user_agent: str | None = None
    referer: str | None = None
    origin: str | None = None
    fetch_site: str | None = None
    gpc: bool = False
    cookies: dict[str, str] = field(default_factory=dict)
    epik: str | None = None
    content_type: bytes | None = None
    content_length: bytes | None = None
    content_encoding: bytes | None = None
    authorization: bytes | None = None

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @classmethod
    def from_scope(cls, scope: Scope, proxies: TrustedProxies) -> VisitorRequest:
        ip, scheme = proxies.resolve(scope)
        visitor = cls(ip=ip, scheme=scheme)
        cookie_header: list[str] = []
        for name, value in scope["headers"]:
            if name == b"host":
                visitor.host = value
            elif name == b"user-agent":
                visitor.user_agent = value.decode("latin-1")
            elif name == b"cookie":
                cookie_header.append(value.decode("latin-1"))
            elif name == b"referer":
                visitor.referer = value.decode("latin-1")
            elif name == b"origin":
                visitor.origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                visitor.fetch_site = value.decode("latin-1")
            elif name == b"sec-gpc":
                visitor.gpc = value.strip() == b"1"
            elif name == b"content-type":
                visitor.content_type = value
            elif name == b"content-length":
                visitor.content_length = value
            elif name == b"content-encoding":
                visitor.content_encoding = value
            elif name == b"authorization":
                visitor.authorization = value
        if cookie_header:
            visitor.cookies = cookie_parser("; ".join(cookie_header))
        query = scope.get("query_string", b"")
        if b"epik=" in query:
            visitor.epik = epik_from_query(query)
        return visitor


@dataclass
class IntakeResult:
    """The answer to a batch: ids accepted, ``{"index", "id", "reasons"}`` per rejected event, cookies to set.

    ``events`` are the Pinterest events the pipelines made and the sink was given (match keys
    hashed), for ``track()``'s result.
    """

    accepted: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    cookies: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    unknown_visitor_keys: list[str] = field(default_factory=list)  # a server source's unknown context.visitor_key

    def body(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected}


def identity_keys(user_id: object, traits: Mapping[str, Any] | None, *, default_country: str) -> dict[str, str]:
    """Hashed match keys for ``_psu``: trait name -> SHA-256 (``user_id`` included). Raw values are dropped."""
    from pinsignal.pipeline.normalise import hash_match_key

    flat: dict[str, Any] = {}
    for key, value in (traits or {}).items():
        if key == "address" and isinstance(value, Mapping):
            for sub, name in _ADDRESS_KEYS.items():
                if sub in value:
                    flat.setdefault(name, value[sub])
            continue
        flat.setdefault(_TRAIT_ALIASES.get(key, key), value)
    hashed: dict[str, str] = {}
    for trait, target in IDENTITY_TRAITS.items():
        value = flat.get(trait)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            digest = hash_match_key(target, str(value), default_country=default_country)
            if digest:
                hashed[trait] = digest
    if isinstance(user_id, str | int) and not isinstance(user_id, bool) and str(user_id).strip():
        digest = hash_match_key("external_id", str(user_id), default_country=default_country)
        if digest:
            hashed["user_id"] = digest
    return hashed


class Intake:
    """Everything a request needs to turn raw events into queued ones; one per middleware."""

    def __init__(self, config: Config, *, sink: Sink, engine: Engine | None = None,
                 observer: Observer | None = None) -> None:
        secret = config.require_secret()
        self.config = config
        self.sink = sink
        # the trace, refusal counters and quarantine (pinsignal.trace): Redis beside the queue,
        # memory beside a MemorySink
        self.observer = observer or (MemoryObserver(config) if isinstance(sink, MemorySink) else
                                     RedisObserver(config) if isinstance(sink, QueueSink) else Observer(config))
        self.account = config.ad_account_id or "default"
        # several ad accounts (DESIGN 8.4): the first match of PINSIGNAL_ACCOUNTS, else self.account
        self.routes = Accounts.load(config.accounts, default=config.ad_account_id)
        if engine is None:
            from pinsignal.pipeline import Engine

            engine = Engine.from_config(config)
        self.engine = engine
        self.pipeline_cookies = frozenset(self.engine.cookie_names)
        self.consent = ConsentPolicy(config)
        self.ldp = LdpPolicy(config)
        # visitors remembered by key (pinsignal.visitors): Redis beside the queue, memory beside a MemorySink
        self.visitors = visitor_store(config, memory=isinstance(sink, MemorySink), sink=sink)
        self.bots = BotFilter()
        self.proxies = TrustedProxies(config.trusted_proxies)
        self.devices = DeviceIds(secret)
        self.identity = IdentityCookie(secret)
        self.cookies = CookieWriter(domain=CookieDomain(config.cookie_domain), epik_httponly=config.epik_httponly)
        self.quota = ClientQuota.from_config(config)  # per client address; the collector's routes spend it
        self._opened = False

    async def open(self) -> None:
        if not self._opened:
            await self.sink.open()
            self._opened = True
            await self.observer.open()

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.sink.close()
        await self.observer.close()
        await self.visitors.close()

    def visitor(self, scope: Scope) -> VisitorRequest:
        return VisitorRequest.from_scope(scope, self.proxies)

    def device_cookie(self, raw: str | None, *, secure: bool, host: bytes | None) -> str | None:
        """The ``_psid`` to set for a request carrying ``raw``: a new id for a missing or forged one,
        the same id signed again when its signature is over a week old, else ``None``."""
        _, signed = self.devices.renewal(raw)
        return None if signed is None else self.cookies.device(signed, secure=secure, host=host)

    async def accept(self, raws: Sequence[object], visitor: VisitorRequest, *, received_at: float,
                     decoded: bool = False, source: Source = "browser", believe_context: bool = False,
                     source_name: str | None = None) -> IntakeResult:
        """Process a batch of raw events from one request; raises whatever the sink raises.

        ``decoded=True``: the events come straight from JSON decoding (the collector's bodies), so
        the envelope's size walk can leave out the type tests (see ``parse_envelope``).
        ``source="server"``: ``track()`` or a write-key post (DESIGN 8.1), whose server events take
        precedence over browser ones in the queue's dedup. ``believe_context=True`` (a write-key
        post): each event speaks for its own visitor, see :meth:`_server_request`.
        ``source_name``: the write key's name, which ``PINSIGNAL_ACCOUNTS`` may route by.
        """
        outcome = IntakeResult()
        if believe_context:
            # context.visitor_key: the visitor's context remembered by key (pinsignal.visitors)
            raws, outcome.unknown_visitor_keys = await restore_visitors(self, raws)
            return await self._accept(raws, visitor, outcome, self._server_request(), received_at=received_at,
                                      decoded=decoded, source="server", source_name=source_name)
        debug = visitor.cookies.get(DEBUG_COOKIE)
        seen = self.observer.request(valid_debug_code(debug) if debug is not None else None, source)
        if visitor.user_agent is not None and self.bots.is_bot(visitor.user_agent):
            for index, raw in enumerate(raws):
                outcome.rejected.append(_rejection(index, raw, ["known crawler; nothing is sent for crawlers"]))
            seen.refused(None, None, "bot", "known crawler", count=len(raws))
            seen.flush()
            await self.sink.incr("dropped_bot", len(raws))
            return outcome
        return await self._accept(raws, visitor, outcome, self._browser_request(visitor, seen, bool(raws)),
                                  received_at=received_at, decoded=decoded, source=source, source_name=source_name)

    def _browser_request(self, visitor: VisitorRequest, seen: RequestObserver, has_events: bool) -> _Request:
        """What a visitor's own request says for all its events: consent, LDP, cookies, device id, click id."""
        consent = self.consent.for_request(gpc=visitor.gpc, cookies=visitor.cookies)
        request_verdict = consent({})  # the request's own signals; what an event that says nothing gets
        raw_device = visitor.cookies.get(DEVICE_COOKIE)
        device_id: str | None
        cookies: list[str] = []
        if request_verdict == "granted" and has_events:
            # The visitor's first event mints the device id (page loads do not, nor c.js's empty
            # renewal post at pagehide); a returning visitor's is signed again once a week, so the
            # cookie rolls for 400 days.
            device_id, signed = self.devices.renewal(raw_device)
            if signed is not None:
                cookies.append(self.cookies.device(signed, secure=visitor.secure, host=visitor.host))
        else:
            device_id, _ = self.devices.read(raw_device)
        return _Request(seen, consent, request_verdict, self.ldp.for_request(gpc=visitor.gpc, cookies=visitor.cookies),
                        RequestContext(epik=visitor.epik, cookies=self._pipeline_cookies(visitor, device_id)),
                        device_id=device_id, cookies=cookies,
                        remembered=self.identity.loads(visitor.cookies.get(IDENTITY_COOKIE)),
                        # _epik is written again from the server on every request that carries one
                        # (DESIGN 5): a Tag's script-set copy (7 days in Safari) must not be the last
                        # write the browser keeps. The server cannot see a cookie's expiry, so there is
                        # no "renewed lately" shortcut.
                        renew=request_verdict == "granted")

    def _server_request(self) -> _Request:
        """A server source's batch (DESIGN 8.1): each event speaks for its own visitor.

        ``context.ip``, ``context.userAgent`` and ``context.page`` are the shopper's, as the site
        sent them (the request's own address and user agent are the site's server, and are not
        used); ``context.epik`` is the click id the site read from the visitor's ``_epik`` cookie;
        crawlers are recognised by ``context.userAgent``. No cookie is read or set: the request
        is not the visitor's. The consent rules are the configured mode's, with what each event's
        ``context.consent`` says.
        """
        consent = self.consent.for_request(gpc=False, cookies={})
        return _Request(self.observer.request(None, "server"), consent, consent({}), self.ldp.always, None,
                        server=True)

    async def _accept(self, raws: Sequence[object], visitor: VisitorRequest, outcome: IntakeResult,
                      request: _Request, *, received_at: float, decoded: bool, source: Source,
                      source_name: str | None) -> IntakeResult:
        """The one loop over a request's events, for a visitor's own request and a server source's alike.

        They differ in what ``request`` holds (one ``RequestContext`` for the request, or one per event
        from its ``context.epik``; cookies read and written, or none) and in two rules: a server
        source's event is checked for crawlers by its own ``context.userAgent`` and is refused whole
        when any of its pipelines made an invalid event, while a browser event's valid Pinterest events
        are queued beside the invalid one, which is reported and quarantined.
        """
        seen = request.seen
        server = request.server
        consent, request_verdict, ldp = request.consent, request.verdict, request.ldp
        context_of = _server_context
        pending: list[tuple[str, str, dict[str, Any], str]] = []
        route = self.routes.route if self.routes.accounts else None
        refused = invalid = bots = refused_source = 0
        identity = dict(request.remembered)  # an identify early in a batch already counts for the events after it
        device_id = request.device_id
        newest_epik = visitor.epik
        renew = request.renew
        process = self.engine.process
        is_bot = self.bots.is_bot
        pipeline_request = request.context
        for index, raw in enumerate(raws):
            if type(raw) is not dict:
                outcome.rejected.append(_rejection(index, raw, ["the event must be a JSON object"]))
                invalid += 1
                continue
            if server:
                context = raw.get("context")
                agent = context.get("userAgent") if type(context) is dict else None
                if type(agent) is str and is_bot(agent):
                    rejection = _rejection(index, raw, ["known crawler (context.userAgent); nothing is sent for "
                                                        "crawlers"])
                    outcome.rejected.append(rejection)
                    seen.refused(rejection["id"], raw.get("event"), "bot", "known crawler")
                    bots += 1
                    continue
            verdict = _event_verdict(consent, raw, request_verdict)
            if verdict != "granted":
                rejection = _rejection(index, raw, [_CONSENT_REASONS[verdict]])
                outcome.rejected.append(rejection)
                seen.refused(rejection["id"], raw.get("event"), "consent", _CONSENT_REASONS[verdict])
                refused += 1
                continue
            try:
                envelope = parse_envelope(raw, received_at=received_at, decoded=decoded,
                                          context=None if server else context_of(raw, visitor))
            except EnvelopeError as exc:
                rejection = _rejection(index, raw, exc.reasons)
                outcome.rejected.append(rejection)
                seen.refused(rejection["id"], raw.get("event"), "invalid_envelope", "; ".join(exc.reasons))
                invalid += 1
                continue
            envelope["source"] = source
            if server:
                epik = envelope["context"].get("epik")
                pipeline_request = RequestContext(epik=epik if type(epik) is str and valid_epik(epik) else None)
            else:
                if envelope["type"] == "identify":
                    identity.update(identity_keys(envelope.get("user_id"), envelope.get("traits"),
                                                  default_country=self.config.default_country))
                _remember(envelope, identity, device_id)
                if renew:
                    newest_epik = _page_epik(envelope) or newest_epik
            made = process(envelope, pipeline_request)
            if ldp or envelope["context"].get("limited_data_processing") is True:
                for produced in made:
                    flag_ldp(produced.event)
            seen.received(envelope, made)
            valid = True
            for produced in made:
                if produced.refused is not None:
                    _source_refused(made, index, envelope, outcome, seen)
                    break
                if produced.errors:
                    valid = False
            else:
                # routed before the refusals too: a quarantined event keeps its account for the replay
                account = self.account if route is None else route(envelope, host=visitor.host,
                                                                    source_name=source_name) or self.account
                message_id = envelope["message_id"]
                if valid:
                    if not made:
                        seen.unmatched(envelope, pipeline_request, self.config, account)
                    for produced in made:
                        pending.append((message_id, produced.pipeline, produced.event, account))
                    outcome.accepted.append(message_id)
                    continue
                reasons = [f"{produced.pipeline}: {error}" for produced in made for error in produced.errors]
                if not server:  # a browser event's valid Pinterest events go out beside the invalid one
                    for produced in made:
                        if not produced.errors:
                            pending.append((message_id, produced.pipeline, produced.event, account))
                outcome.rejected.append({"index": index, "id": message_id, "reasons": reasons})
                seen.invalid(envelope, reasons, pipeline_request, self.config, account)
                invalid += 1
                continue
            refused_source += 1
        try:
            await self._enqueue(pending, outcome, seen, source)
        except BaseException:
            seen.flush()  # what was seen before the queue failed (the answer is a 503)
            raise
        await seen.done()
        if renew:
            if newest_epik is None:
                cookie = visitor.cookies.get(EPIK_COOKIE)
                newest_epik = cookie if cookie is not None and valid_epik(cookie) else None
            if newest_epik is not None:
                request.cookies.insert(0, self.cookies.epik(newest_epik, secure=visitor.secure, host=visitor.host))
        if not server and identity != request.remembered:
            request.cookies.append(self.cookies.identity(self.identity.dumps(identity), secure=visitor.secure,
                                                         host=visitor.host))
        outcome.cookies = request.cookies
        for counter, amount in (("dropped_bot", bots), ("dropped_consent", refused), ("rejected_invalid", invalid),
                                ("refused_source", refused_source)):
            if amount:
                await self.sink.incr(counter, amount)
        return outcome

    async def _enqueue(self, pending: list[tuple[str, str, dict[str, Any], str]], outcome: IntakeResult,
                       seen: RequestObserver, source: Source) -> None:
        if not pending:
            return
        outcome.events = events = [event for _, _, event, _ in pending]
        # a server event is never a duplicate of a browser one (DESIGN 8.1): the queue gives it precedence
        trusted = source == "server"
        account = pending[0][3]
        if all(routed == account for _, _, _, routed in pending):
            result = await self.sink.enqueue(events, trusted=trusted, account=account)
        else:  # one call per account, all at once (the queue sends one round trip per account)
            accounts = list(dict.fromkeys(routed for _, _, _, routed in pending))
            results = await asyncio.gather(*(
                self.sink.enqueue([event for _, _, event, routed in pending if routed == account],
                                  trusted=trusted, account=account) for account in accounts))
            result = EnqueueResult([i for r in results for i in r.queued], [i for r in results for i in r.duplicates])
        outcome.queued, outcome.duplicates = result.queued, result.duplicates
        seen.queued(pending, result.duplicates)

    def _pipeline_cookies(self, visitor: VisitorRequest, device_id: str | None) -> dict[str, str]:
        cookies: dict[str, str] = {}
        for name in self.pipeline_cookies:
            value = visitor.cookies.get(name)
            if value is None:
                continue
            if name == EPIK_COOKIE and not valid_epik(value):
                continue
            if name == DEVICE_COOKIE:
                if device_id is None:
                    continue
                value = device_id  # pipelines see the verified id, never the signature
            cookies[name] = value
        return cookies



@dataclass(slots=True)
class _Request:
    """What one request's events share, worked out once before its loop (``Intake._accept``)."""

    seen: RequestObserver
    consent: Callable[[Mapping[str, object]], str]
    verdict: str  # consent({}): what an event that says nothing about consent gets
    ldp: bool
    context: RequestContext | None  # the browser's, for every event; a server source's events each make theirs
    server: bool = False
    device_id: str | None = None
    cookies: list[str] = field(default_factory=list)  # Set-Cookie values to answer with
    remembered: Mapping[str, str] = field(default_factory=dict)  # _psu: identify()'s hashed keys
    renew: bool = False  # consent granted: _epik is written again


def _source_refused(made: list[Produced], index: int, envelope: dict[str, Any], outcome: IntakeResult,
                    seen: RequestObserver) -> bool:
    """Whether a pipeline refused the event for its source; then the refusal is recorded.

    An event that a ``trigger.source`` pipeline matched but does not take from its source is
    refused as a whole, with the reason, and counted (``refused:source``), not quarantined: it is
    not a mistake to fix and replay, it is someone else's to send.
    """
    if not made or all(produced.refused is None for produced in made):
        return False
    reasons = [produced.refused for produced in made if produced.refused is not None]
    outcome.rejected.append({"index": index, "id": envelope["message_id"], "reasons": reasons})
    seen.refused(envelope["message_id"], envelope.get("event"), "source", "; ".join(reasons))
    return True


def _event_verdict(consent: Callable[[Mapping[str, object]], str], raw: dict[str, Any], request_verdict: str) -> str:
    """``consent(raw)``, without the call for an event with no ``context.consent`` (most of them).

    An event speaks for itself only through ``context.consent.advertising``
    (``ConsentPolicy.event_consent``); any other event gets what ``consent({})`` gave.
    """
    context = raw.get("context")
    if context is None or (type(context) is dict and "consent" not in context):
        return request_verdict
    return consent(raw)


def _server_context(raw: dict[str, Any], visitor: VisitorRequest) -> dict[str, Any]:
    """The event's ``context`` (a copy) with what the server knows: IP, user agent, page URL from ``Referer``.

    ``epik`` and ``visitor_key`` in a browser's context are dropped: only a server source is believed
    about them (DESIGN 8.1).
    """
    context = raw.get("context")
    if type(context) is dict and ("epik" in context or "visitor_key" in context):
        context = {key: value for key, value in context.items() if key != "epik" and key != "visitor_key"}
    context = {**context, "ip": visitor.ip, "userAgent": visitor.user_agent} if type(context) is dict else {
        "ip": visitor.ip, "userAgent": visitor.user_agent}
    page = context.get("page")
    if (type(page) is not dict or not page.get("url")) and visitor.referer:
        context["page"] = {**(page if type(page) is dict else {}), "url": visitor.referer}
    if None in context.values():  # no IP or user agent known, or the client sent nulls: leave them out
        context = {key: value for key, value in context.items() if value is not None}
    return context


_CONSENT_REASONS = {
    "gpc": "the browser sent Sec-GPC: 1 (Global Privacy Control); nothing is sent to Pinterest",
    "refused": "advertising consent was refused; nothing is sent to Pinterest",
    "not_given": "consent mode is opt-in and advertising consent has not been given",
}


def _rejection(index: int, raw: object, reasons: list[str]) -> dict[str, Any]:
    event_id: object = None
    if type(raw) is dict:
        event_id = raw.get("message_id", raw.get("messageId"))
    return {"index": index, "id": event_id if isinstance(event_id, str) else None, "reasons": reasons}


def _page_epik(envelope: dict[str, Any]) -> str | None:
    """The click id in the event's page URL (a landing page's own events), if there is a valid one."""
    page = envelope.get("context", {}).get("page")
    url = page.get("url") if type(page) is dict else None
    if type(url) is not str or "epik=" not in url:
        return None
    query = url.partition("?")[2].partition("#")[0]
    return epik_from_query(query.encode("utf-8", "replace"))


def _remember(envelope: dict[str, Any], remembered: Mapping[str, str], device_id: str | None) -> None:
    """Fill what ``identify()`` remembered (hashed) and the device id, where the event has nothing."""
    if remembered:
        traits = envelope.get("traits")
        traits = dict(traits) if type(traits) is dict else {}
        for name, digest in remembered.items():
            if name == "user_id":
                if not envelope.get("user_id"):
                    envelope["user_id"] = digest
            elif not traits.get(name):
                traits[name] = digest
        envelope["traits"] = traits
    if device_id is not None and not envelope.get("anonymous_id"):
        envelope["anonymous_id"] = device_id
