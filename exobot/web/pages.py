"""The operators' pages: dashboard, ticket list, ticket page, new ticket, quarantine."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from exobot.web.deps import PageOperator
from exobot.web.templating import render

router = APIRouter()


@router.get("/")
async def dashboard(request: Request, operator: PageOperator) -> Response:
    """The dashboard."""
    return render(request, "dashboard.html", operator=operator)
