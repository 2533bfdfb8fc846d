"""GET /healthz: exobot's health for a load balancer, a container's HEALTHCHECK or a person.

No login, no session, no cookie: it tells component states and times, never an address, an
error text or a count of anything a member wrote. 200 when healthy, 503 when not
(exobot.health decides which).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import JSONResponse

from exobot.health import Health

PATH = "/healthz"


def add_health_route(app: FastAPI, health: Health) -> None:
    """Serve `health`'s report on /healthz (GET and HEAD)."""

    async def healthz() -> JSONResponse:
        report = await health.report()
        return JSONResponse(
            report.body,
            status_code=report.status_code,
            headers={"Cache-Control": "no-store"},
        )

    app.add_api_route(PATH, healthz, methods=["GET", "HEAD"], include_in_schema=False)
