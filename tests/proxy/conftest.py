from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import proxy_upstream
import pytest
from proxy_support import proxy_server_options

from pinsignal.proxy import ProxyApp, ProxySettings
from support import ServerThread


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerThread]:
    """The Python upstream site (``proxy_upstream.app``) under a real uvicorn, for the whole session."""
    with ServerThread(proxy_upstream.app, server_header=False, date_header=False) as server:
        yield server


@pytest.fixture
def make_proxy(upstream: ServerThread) -> Iterator[Callable[..., ServerThread]]:
    """``make_proxy(inject=True, ...)``: a real uvicorn serving a ``ProxyApp`` in front of ``upstream``."""
    with contextlib.ExitStack() as stack:
        def make(app: Any = None, **settings: Any) -> ServerThread:
            settings.setdefault("upstream", upstream.url)
            handoff = settings.pop("handoff", None)
            app = app or ProxyApp(ProxySettings(**settings), handoff=handoff)
            # Served as ``pinsignal proxy`` serves it: the same protocol, with the app's limits.
            return stack.enter_context(ServerThread(app, **proxy_server_options(app.settings)))
        yield make
