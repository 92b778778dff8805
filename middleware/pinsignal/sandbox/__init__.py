"""A strict local stand-in for Pinterest's ``POST /v5/ad_accounts/{ad_account_id}/events``.

    from pinsignal.sandbox import SandboxSettings, create_app
    app = create_app(SandboxSettings(tokens=("sandbox-token",)))   # serve with uvicorn

or ``pinsignal sandbox --port 8410``, then ``PINTEREST_API_URL=http://127.0.0.1:8410``.
See ``docs/sandbox.md`` for the routes, options, fault API and what it validates.
"""

from __future__ import annotations

from pinsignal.sandbox.app import create_app
from pinsignal.sandbox.client import SandboxClient
from pinsignal.sandbox.settings import DEFAULT_TOKEN, DEMO_AD_ACCOUNT, SandboxSettings

__all__ = ["DEFAULT_TOKEN", "DEMO_AD_ACCOUNT", "SandboxClient", "SandboxSettings", "create_app"]
