"""The example shop that ``pinsignal demo`` serves: FastAPI wrapped with ``PinSignalMiddleware``.

    from examples.shop import create_app
    app = create_app()          # settings from the environment (DESIGN 2.3)
"""

from __future__ import annotations

from .app import create_app, shop_pipelines

__all__ = ["create_app", "shop_pipelines"]
