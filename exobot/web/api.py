"""The JSON API under /api/v1 (bearer tokens): the same operations as chat and the pages."""

from __future__ import annotations

from fastapi import FastAPI

from exobot.web.context import WebContext


def create_api(context: WebContext) -> FastAPI:
    """The API application, mounted at /api/v1; its schema is /api/v1/openapi.json."""
    api = FastAPI(title="exobot", version="1", docs_url=None, redoc_url=None)
    api.state.context = context
    return api
