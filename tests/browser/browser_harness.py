"""Helpers of the browser tests: the `Web` helper (one exobot with Matrix and the web on, a
browser to drive it), Chromium's launch settings and the pages' wording."""

from __future__ import annotations

import email.policy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

from harness import DEADLINE, Instance, member_mail, unique, wait_until
from matrix_harness import MatrixUser, body_of, sender_of, thread_root_of
from playwright.async_api import Browser, BrowserContext, Page, expect

from exobot import i18n
from exobot.core.intents import Intent
from exobot.core.model import Actor
from exobot.mail import processor

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
LANGUAGE = "ca"  # the instances' configured language: what the pages say


def say(msgid: str, **params: object) -> str:
    """A message as the pages show it (the configured language)."""
    return i18n.say(LANGUAGE, msgid, **params)


@dataclass
class Web:
    """One exobot with Matrix and the web server on, its rooms and helpers for a browser."""

    inst: Instance
    setup: object
    browser: Browser
    matrix_login: Callable
    contexts: list[BrowserContext] = field(default_factory=list)
    _vol: MatrixUser | None = None

    # ------------------------------------------------------------------ browser

    @property
    def url(self) -> str:
        """The web server's base URL (no trailing slash)."""
        return self.inst.web_url

    def ticket_url(self, number: int) -> str:
        return f"{self.url}/tickets/{number}"

    async def context(self, **options: object) -> BrowserContext:
        """A fresh browser context (own cookies), closed at the end of the test."""
        context = await self.browser.new_context(**options)
        # Page actions and expect() wait as long as the suite's other waits: they return as
        # soon as the page is ready, and a busy machine may take more than a few seconds.
        context.set_default_timeout(DEADLINE * 1000)
        expect.set_options(timeout=DEADLINE * 1000)
        self.contexts.append(context)
        return context

    async def page(self, **options: object) -> Page:
        """A page in a fresh context, not logged in."""
        context = await self.context(**options)
        return await context.new_page()

    async def login(self, page: Page, user: str | None = None, password: str | None = None) -> None:
        """Fill the login page's password form and submit it (whatever the outcome)."""
        await page.goto(f"{self.url}/login")
        await page.get_by_label(say("Matrix user")).fill(user or self.setup.volunteer_user_id)
        await page.get_by_label(say("Password")).fill(
            password or self.setup.volunteer_password
        )
        async with page.expect_navigation():
            await (
                page.locator("main form")
                .get_by_role("button", name=say("Log in"))
                .click()
            )

    async def logged_in_page(self, **options: object) -> Page:
        """A page in a fresh context, logged in as the setup's volunteer (on the dashboard)."""
        page = await self.page(**options)
        await self.login(page)
        assert page.url == f"{self.url}/", f"login failed: at {page.url}"
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()
        self.contexts.clear()

    # --------------------------------------------------------------------- mail

    async def mail_ticket(self, member: str | None = None, **mail: str) -> tuple[int, str]:
        """A member's mail becomes a ticket; returns its number and the member's address."""
        member = member or unique("membre")
        number = await self.deliver(member_mail(member, self.inst.address, **mail), member)
        return number, member

    async def deliver(self, msg: EmailMessage | bytes, envelope_from: str) -> int:
        """Deliver a new mail (a message or raw bytes) to the support mailbox, wait for the
        ticket it opens; returns the ticket's number."""
        before = self.inst.scalar("SELECT count(*) FROM tickets")
        raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=email.policy.SMTP)
        await self.inst.deliver_raw(raw, parseaddr(envelope_from)[1] or envelope_from)
        await self.inst.wait_tickets(before + 1)
        return self.inst.scalar("SELECT max(id) FROM tickets")

    async def quarantine(self, msg: EmailMessage, envelope_from: str, monkeypatch) -> int:
        """Deliver a mail that exobot quarantines after parsing it (a simulated bug in the
        rules, whose message repeats the subject); returns its stored id."""
        marker = f"quarantine-me-{uuid.uuid4().hex[:8]}"
        real_rules = processor.run_rules

        async def buggy_rules(parsed, context, rules):
            if parsed.message_id and marker in parsed.message_id:
                raise RuntimeError(f"simulated rules bug on {parsed.subject}")
            return await real_rules(parsed, context, rules)

        monkeypatch.setattr(processor, "run_rules", buggy_rules)
        del msg["Message-ID"]
        msg["Message-ID"] = make_msgid(idstring=marker, domain="member.example.org")
        sql = "SELECT id FROM inbound_mail WHERE state = 'quarantined' AND message_id LIKE :m"
        await self.inst.deliver_raw(
            msg.as_bytes(policy=email.policy.SMTP), parseaddr(envelope_from)[1]
        )

        async def quarantined() -> object:
            return self.inst.scalar(sql, m=f"%{marker}%")

        return await wait_until(quarantined, what="the mail in quarantine")

    async def act(self, intent: Intent) -> None:
        """Apply an intent as the volunteer, straight through exobot's service."""
        actor = Actor.operator(self.setup.volunteer_user_id)
        await self.inst.app.service.apply(actor, intent)

    def ticket(self, number: int) -> tuple:
        """(status, owner, queue, title) of a ticket, from the database."""
        return self.inst.query(
            "SELECT status, owner, queue, title FROM tickets WHERE id = :n", n=number
        )[0]

    # ------------------------------------------------------------------- matrix

    async def volunteer(self) -> MatrixUser:
        """The setup's volunteer, logged in to Matrix and syncing (made on first use)."""
        if self._vol is None:
            self._vol = await self.matrix_login(
                self.setup.volunteer_user_id, self.setup.volunteer_password, self.setup.homeserver
            )
        return self._vol

    def room(self, queue: str = "suport") -> str:
        return self.setup.rooms[queue]

    async def bot_says(
        self, predicate, queue: str = "suport", after: int = 0, what: str = ""
    ) -> dict:
        """Wait for a bot message in the queue's room satisfying predicate."""
        vol = await self.volunteer()
        bot = self.setup.bot_user_id
        return await vol.wait_for(
            self.room(queue),
            lambda e: sender_of(e) == bot and e.get("type") == "m.room.message" and predicate(e),
            after=after,
            what=what or "a bot message",
        )

    async def root_of(self, number: int, queue: str = "suport") -> str:
        """The event id of the ticket's root message in its queue room."""
        root = await self.bot_says(
            lambda e: f"suport#{number}" in (body_of(e) or "") and thread_root_of(e) is None,
            queue=queue,
            what=f"the root message of suport#{number}",
        )
        return root["event_id"]

    async def command(self, text: str, *, thread: str | None = None, queue: str = "suport"):
        """The volunteer sends a chat command; returns (event id, mark before the answers)."""
        vol = await self.volunteer()
        mark = vol.mark(self.room(queue))
        event_id = await vol.send(self.room(queue), text, thread_root=thread)
        return event_id, mark
