"""exobot's test plugin: one of everything the plugin API offers, each switchable to fail.

Installed for the tests through a real entry point (see tests/plugins/conftest.py); it is not
a bundled plugin and never ships.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Request
from markupsafe import escape

from exobot.core.actions import ActionCall, ActionSpec, Answer, TicketUse
from exobot.core.events import TicketEvent
from exobot.plugins import Panel, Plugin, PluginConfig, PluginContext
from exobot.web.deps import ApiOperator, PageOperator

HERE = Path(__file__).parent

metadata = sa.MetaData()
seen = sa.Table(
    "sample_seen",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket", sa.Integer, nullable=False),
    sa.Column("what", sa.String(100), nullable=False),
)

#: What the tests read back: every call the plugin got, and switches that make parts fail.
CALLS: list[tuple] = []
FAIL: set[str] = set()


def _maybe_fail(what: str) -> None:
    CALLS.append((what,))
    if what in FAIL:
        raise RuntimeError(f"sample plugin told to fail in {what}")


class SampleConfig(PluginConfig):
    """Settings of the test plugin."""

    greeting: str = "Hola"
    every: int = 3600  # seconds between two runs of its job
    flag_word: str = "urgent"
    digest_queue: str | None = None  # a queue whose room alone gets one more digest line


class Sample(Plugin):
    """A test plugin with one of everything."""

    config_model = SampleConfig
    migrations = HERE / "migrations"
    templates = HERE / "templates"
    # `exobot sampletool …` too; "migrate" is exobot's own command and stays exobot's.
    cli_aliases = ("sampletool", "migrate")

    async def start(self, ctx: PluginContext) -> None:
        """Register one of everything."""
        _maybe_fail("start")
        self.ctx = ctx
        cfg: SampleConfig = ctx.config  # type: ignore[assignment]

        async def hello(call: ActionCall) -> Answer:
            _maybe_fail("action")
            return Answer(f"{cfg.greeting} {call.actor}")

        ctx.add_action(
            ActionSpec(
                "samplehello",
                "!samplehello",
                "Says hello.",
                ticket=TicketUse.NONE,
                handler=hello,
                api_summary="Sample hello",
                api_description="Says hello.",
            )
        )

        async def on_event(event: TicketEvent) -> None:
            _maybe_fail("event")
            CALLS.append(("event-seen", event.ticket, str(event.kind)))

        ctx.on(TicketEvent, on_event)

        async def on_mail(new) -> None:  # noqa: ANN001 - exobot.plugins.NewMail
            _maybe_fail("mail")
            await new.execute(seen.insert().values(ticket=new.ticket.number, what="mail"))
            _maybe_fail("mail-after-write")  # its row must not outlive the failure
            if cfg.flag_word in new.mail.subject.lower():
                new.flag("sample-urgent", f"the subject says {cfg.flag_word}")
                new.add_ack_paragraph(f"{cfg.greeting}: we saw it is <urgent> & act fast.")

        ctx.on_new_mail(on_mail)

        async def root(ticket, language: str) -> list[str]:  # noqa: ANN001
            _maybe_fail("root")
            return [f"sample root line for #{ticket.number} <b>"]

        ctx.add_root_lines(root)

        async def panel(ticket, language: str) -> Panel:  # noqa: ANN001
            _maybe_fail("panel")
            return Panel("Sample <panel>", f"<p>{escape(ticket.title)} sample-panel-body</p>")

        ctx.add_panel(panel)

        async def digest(language: str) -> list[str]:
            _maybe_fail("digest")
            return ["sample digest line"]

        ctx.add_digest_lines(digest)

        if cfg.digest_queue:

            async def queue_digest(language: str) -> list[str]:
                return [f"sample digest line for {cfg.digest_queue} only"]

            ctx.add_digest_lines(queue_digest, queue=cfg.digest_queue)

        async def job() -> None:
            _maybe_fail("job")
            async with ctx.connection() as conn:
                await conn.execute(seen.insert().values(ticket=0, what="job"))

        ctx.schedule(job, every=timedelta(seconds=cfg.every), name="tick")

        pages = APIRouter()

        @pages.get("/")
        async def page(request: Request, operator: PageOperator):
            return ctx.render_page(request, "sample.html", who=operator.user_id)

        ctx.web_router(pages)

        api = APIRouter()

        @api.get("/hello")
        async def api_hello(operator: ApiOperator) -> dict:
            return {"hello": operator.user_id, "greeting": cfg.greeting}

        ctx.api_router(api)

        async def export(subject) -> dict:  # noqa: ANN001
            return {"ticket": subject.ticket, "address": subject.address}

        async def erase(subject) -> int:  # noqa: ANN001
            return 1

        async def backup() -> dict:
            return {"rows": 0}

        ctx.add_data_handlers(export=export, erase=erase, backup=backup)

    async def stop(self) -> None:
        """Nothing of its own to release."""
        CALLS.append(("stop",))

    def add_cli(self, parser: argparse.ArgumentParser) -> None:
        """`exobot sample count`."""
        parser.add_argument("what", choices=["count"])

    async def run_cli(self, args: argparse.Namespace, ctx: PluginContext) -> int:
        """Print how many rows its table holds."""
        async with ctx.connection() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(seen))).scalar()
        print(f"{ctx.config.greeting}: {count} rows")
        return 0
