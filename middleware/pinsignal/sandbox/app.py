"""The sandbox as a Starlette app: Pinterest's events route plus a small test API.

    app = create_app(SandboxSettings(tokens=("t",)))
    # POST /v5/ad_accounts/{id}/events    as Pinterest answers it
    # GET  /                              what it received (HTML, newest first)
    # GET  /_sandbox/events               recorded events as JSON (?since=SEQ&limit=N&account=ID&event_id=X)
    # GET  /_sandbox/stats                counters
    # POST /_sandbox/reset                forget everything, back to the start-up settings
    # GET/POST/DELETE /_sandbox/faults    inspect, add, clear injected faults (see faults.py)
    # GET/POST /_sandbox/settings         show or switch settings ({"partial_failure": 200}) until reset
    # GET  /_sandbox/health               {"ok": true}
    # GET  /v5/ad_accounts/{id}/conversion_eqs?lookback_period=14d   Event Quality Score from what it recorded

The ``/_sandbox`` prefix is one Pinterest never uses, so the same client code works against both.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from pinsignal.errors import ConfigError
from pinsignal.sandbox.endpoint import EventsEndpoint
from pinsignal.sandbox.faults import FaultError
from pinsignal.sandbox.page import PAGE_SIZE, render_page
from pinsignal.sandbox.settings import SandboxSettings
from pinsignal.sandbox.state import Record, SandboxState

__all__ = ["create_app"]

logger = logging.getLogger("pinsignal.sandbox")

_PAGE_HEADERS = {
    # the page shows request bodies: no script may run, whatever slips through
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


def create_app(settings: SandboxSettings | None = None) -> Starlette:
    """A fresh sandbox with its own state; ``app.state.sandbox`` is the :class:`SandboxState`."""
    state = SandboxState(settings or SandboxSettings())
    events = EventsEndpoint(state)

    async def page(request: Request) -> Response:
        newest = itertools.islice(reversed(state.records), PAGE_SIZE)
        return HTMLResponse(render_page(newest, state.stats()), headers=_PAGE_HEADERS)

    async def recorded(request: Request) -> Response:
        query = request.query_params
        try:
            since = int(query.get("since", "0"))
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            return _json({"code": 4196, "message": "since and limit must be whole numbers."}, 400)
        account = query.get("account")
        event_id = query.get("event_id")
        selected: list[dict[str, Any]] = []
        for record in _after(state.records, since):
            if account is not None and record.ad_account_id != account:
                continue
            if event_id is not None and orjson.loads(record.event).get("event_id") != event_id:
                continue
            selected.append(_record_json(record))
            if limit is not None and len(selected) >= limit:
                break
        return _json({"events": selected, "count": len(selected), "last_seq": state.seq,
                      "evicted": state.counts["events_evicted"]})

    async def stats(request: Request) -> Response:
        return _json(state.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        logger.info("sandbox reset")
        return _json({"ok": True})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
            state.settings = state.settings.with_(calls_per_minute=state.initial.calls_per_minute)
        elif request.method == "POST":
            try:
                spec = orjson.loads(await request.body())
                if not isinstance(spec, dict):
                    raise FaultError('the fault must be a JSON object like {"status": 503, "count": 2}.')
                calls = state.faults.add(spec)
            except (orjson.JSONDecodeError, FaultError) as exc:
                return _json({"code": 4196, "message": f"Invalid fault: {exc}"}, 400)
            if calls is not None:
                state.settings = state.settings.with_(calls_per_minute=calls)
                state.windows.clear()
            logger.info("sandbox fault added: %s", spec)
        return _json({**state.faults.as_dict(), "calls_per_minute": state.settings.calls_per_minute})

    async def settings_route(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = orjson.loads(await request.body())
                if not isinstance(changes, dict):
                    raise ConfigError('settings must be a JSON object like {"partial_failure": 200}.')
                unknown = sorted(set(changes) - _RUNTIME_SETTINGS)
                if unknown:
                    raise ConfigError(f"{unknown[0]!r} cannot be changed at run time; "
                                      f"use one of {', '.join(sorted(_RUNTIME_SETTINGS))}.")
                for name in ("tokens", "accounts"):
                    if name in changes:
                        values = changes[name]
                        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                            raise ConfigError(f"{name} must be a list of strings, got {values!r}.")
                        changes[name] = tuple(values)
                state.settings = state.settings.with_(**changes)
            except (orjson.JSONDecodeError, ConfigError, TypeError) as exc:
                return _json({"code": 4196, "message": f"Invalid settings: {exc}"}, 400)
            logger.info("sandbox settings changed: %s", ", ".join(sorted(changes)))
        return _json(_public_settings(state.settings))

    async def health(request: Request) -> Response:
        return _json({"ok": True})

    async def conversion_eqs(request: Request) -> Response:
        from pinsignal.sandbox.eqs import LOOKBACKS, event_quality

        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in state.settings.tokens:
            return _json({"code": 2, "message": "Authentication failed."}, 401)
        lookback = request.query_params.get("lookback_period")
        if lookback not in LOOKBACKS:
            return _json({"code": 1, "message": f"lookback_period must be one of 1d, 14d, got {lookback!r}."}, 400)
        account = request.path_params["ad_account_id"]
        return Response(orjson.dumps(event_quality(state.records, account, now=time.time(), lookback=lookback)),
                        media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "Resource not found." if status == 404 else f"Method {request.method} is not allowed here."
        response = _json({"code": status, "message": message}, status)
        response.headers["x-pinterest-rid"] = secrets.token_hex(8)
        return response

    routes = [
        Route("/v5/ad_accounts/{ad_account_id}/events", events.__call__, methods=["POST"]),
        Route("/v5/ad_accounts/{ad_account_id}/conversion_eqs", conversion_eqs, methods=["GET"]),
        Route("/", page, methods=["GET"]),
        Route("/_sandbox/events", recorded, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/settings", settings_route, methods=["GET", "POST"]),
        Route("/_sandbox/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.sandbox = state
    return app


# what a test may switch on a running sandbox (reset restores the start-up values)
_RUNTIME_SETTINGS = frozenset({"tokens", "accounts", "partial_failure", "max_age_days", "calls_per_minute",
                               "unknown_event_names", "test_event_limit", "omit_empty_messages"})


def _public_settings(settings: SandboxSettings) -> dict[str, Any]:
    # tokens stay out of answers: the page and this API are unauthenticated
    return {name: getattr(settings, name) for name in sorted(_RUNTIME_SETTINGS - {"tokens"})} | {
        "tokens": len(settings.tokens)}


def _after(records: Any, since: int) -> Any:
    """Records with ``seq > since``; seqs are consecutive, so skip straight to the first one."""
    if not records or since < records[0].seq:
        return records
    start = since - records[0].seq + 1
    return itertools.islice(records, start, None)


def _record_json(record: Record) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "ad_account_id": record.ad_account_id,
        "received_at": record.received_at,
        "request_id": record.request_id,
        "duplicate": record.duplicate,
        "event": orjson.Fragment(record.event),
    }


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
