"""``POST /v5/ad_accounts/{ad_account_id}/events``, answered in Pinterest's shapes.

Order of checks (each stops the request): injected fault, ``Authorization`` (401), ad account id
format (400), ad account permitted (403), rate limit (429), content type, size and JSON (400),
top-level shape and every event's schema (400 for the whole request), then per-event rules
(``failed`` entries: 422 ``DetailedError`` code 953, or 200 when ``partial_failure`` is 200).
Every answer carries ``x-pinterest-rid`` and the ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from pinsignal.sandbox.faults import StatusFault, error_body
from pinsignal.sandbox.settings import ACCOUNT_RE
from pinsignal.sandbox.state import SandboxState
from pinsignal.sandbox.validation import BatchVerdict, judge_batch, schema_problems, top_level_error

__all__ = ["EventsEndpoint"]

logger = logging.getLogger("pinsignal.sandbox")

_DETAILED_MESSAGE = "The action could not be processed properly due to some or all data provided being invalid."
_TRUE = {"true", "1"}


class EventsEndpoint:
    """The ASGI endpoint for the events route, bound to one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def __call__(self, request: Request) -> Response:
        state = self.state
        request_id = secrets.token_hex(8)
        account = request.path_params["ad_account_id"]
        delay = state.faults.next_delay()
        fault = state.faults.next_status()
        if delay:
            generation = state.generation
            await anyio.sleep(delay)
            if state.generation != generation:
                # a reset while this call waited: it must not leak into what the next test sees
                body = {"code": 500, "message": "The sandbox was reset while this call waited; nothing was recorded."}
                return Response(orjson.dumps(body), status_code=500, headers={"x-pinterest-rid": request_id},
                                media_type="application/json")
        now = time.time()
        if fault is not None:
            state.counts["faults_injected"] += 1
            status, body, headers = await self._fault(fault, request, account, now)
        else:
            status, body, headers = await self._answer(request, account, now, request_id)
        state.requests[status] += 1
        headers["x-pinterest-rid"] = request_id
        return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")

    # ------------------------------------------------------------------ the real thing

    async def _answer(self, request: Request, account: str, now: float,
                      request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        state = self.state
        settings = state.settings
        if not self._authorised(request):
            return 401, error_body(401), self._rate_headers(*state.peek_calls(account, now))
        if not ACCOUNT_RE.match(account):
            return 400, _invalid(f"ad_account_id must be digits only, at most 18 of them, got {account!r}"), \
                self._rate_headers(*state.peek_calls(account, now))
        if settings.accounts and account not in settings.accounts:
            return 403, error_body(403), self._rate_headers(*state.peek_calls(account, now))
        allowed, remaining, reset = state.take_call(account, now)
        headers = self._rate_headers(remaining, reset)
        if not allowed:
            return 429, error_body(429), headers

        problem, data = await self._read(request)
        if problem is not None:
            return 400, _invalid(problem), headers
        assert data is not None
        messages, bad_events = schema_problems(data)
        if messages:
            if bad_events > 1:
                messages.append(f"({bad_events} of {len(data)} events are invalid)")
            return 400, _invalid("; ".join(messages)), headers

        test = request.query_params.get("test", "").lower() in _TRUE
        verdict = judge_batch(data, settings, now=now, test=test)
        self._count_and_record(data, verdict, account, now, request_id, test)
        body = self._response_body(verdict, len(data))
        if verdict.failed and settings.partial_failure == 422:
            return 422, {"code": 953, "message": _DETAILED_MESSAGE, "details": body}, headers
        return 200, body, headers

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.state.settings.tokens

    async def _read(self, request: Request) -> tuple[str | None, list[dict[str, Any]] | None]:
        """(problem, events): the body as a list of events, or why it cannot be one."""
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return f"Content-Type must be application/json, got {content_type!r}", None
        limit = self.state.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return f"the body of {declared} bytes is larger than the sandbox limit of {limit} bytes", None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return f"the body is larger than the sandbox limit of {limit} bytes", None
            chunks.append(chunk)
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            return f"the body is not valid JSON ({exc})", None
        problem = top_level_error(body)
        if problem is not None:
            return problem, None
        return None, body["data"]

    def _count_and_record(self, data: list[dict[str, Any]], verdict: BatchVerdict, account: str, now: float,
                          request_id: str, test: bool) -> None:
        state = self.state
        counts = state.counts
        counts["events_received"] += len(data)
        counts["events_processed"] += verdict.processed
        counts["events_failed"] += verdict.failed
        if test:
            counts["test_requests"] += 1
            counts["test_events"] += len(data)
            return
        processed = (event for event, (status, _, _) in zip(data, verdict.verdicts, strict=True)
                     if status == "processed")
        recorded, duplicates = state.record_batch(account, now, request_id, processed)
        counts["events_recorded"] += recorded
        counts["duplicates"] += duplicates

    def _response_body(self, verdict: BatchVerdict, received: int) -> dict[str, Any]:
        omit = self.state.settings.omit_empty_messages
        events: list[dict[str, Any]] = []
        for status, error, warning in verdict.verdicts:
            entry: dict[str, Any] = {"status": status}
            if error or not omit:
                entry["error_message"] = error
            if warning or not omit:
                entry["warning_message"] = warning
            events.append(entry)
        return {"num_events_received": received, "num_events_processed": verdict.processed, "events": events}

    def _rate_headers(self, remaining: int, reset: int) -> dict[str, str]:
        limit = self.state.settings.calls_per_minute
        # the observed format (reference 9.1): limit, then the policy with its window and name
        return {
            "x-ratelimit-limit": f'{limit}, {limit};w=60;name="ads_conversions_ad_account_id"',
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
        }

    # ------------------------------------------------------------------ injected faults

    async def _fault(self, fault: StatusFault, request: Request, account: str,
                     now: float) -> tuple[int, dict[str, Any], dict[str, str]]:
        remaining, reset = self.state.peek_calls(account, now)
        if fault.status == 429:
            remaining = 0
        if fault.ratelimit_reset is not None:
            reset = fault.ratelimit_reset
        headers = self._rate_headers(remaining, reset)
        if fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
        body = error_body(fault.status)
        if fault.status == 422:
            body = {"code": 953, "message": _DETAILED_MESSAGE, "details": await self._all_failed(request)}
        logger.info("injected HTTP %d for account %s", fault.status, account)
        return fault.status, body, headers

    async def _all_failed(self, request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body()).get("data") or []
        except (orjson.JSONDecodeError, AttributeError):
            data = []
        count = len(data) if isinstance(data, list) else 0
        entry = {"status": "failed", "error_message": "Injected failure (sandbox fault).", "warning_message": ""}
        return {"num_events_received": count, "num_events_processed": 0, "events": [entry] * count}


def _invalid(detail: str) -> dict[str, Any]:
    # SPEC example code for 400; the "Invalid request: ..." wording is the one observed (reference 8.2)
    return {"code": 4196, "message": f"Invalid request: {detail}"}
