"""The REST API and web dashboard (``genesis serve``): FastAPI app, routers, service layer.

Layout: ``app.create_app(settings)`` builds the app; ``deps`` holds the request dependencies
(database, Redis, the caller's key and role); ``routers/`` has one module per area, each a thin
HTTP layer over a module of ``services/`` that holds the queries and logic.
"""

from genesis.api.app import create_app

__all__ = ["create_app"]
