"""Hooks that run inside a new mail's transaction (plugins register them; the core runs them).

A hook gets a `NewMail`: the ticket and the mail, whether the mail opened the ticket, and two
ways to act on it that the service applies in the same transaction, after the hooks ran:
`flag()` records a flag entry in the ticket's history, `add_ack_paragraph()` adds a paragraph
to the acknowledgement mail of a new ticket. `execute()` runs a statement on the mail's own
transaction (a plugin's own tables), which commits or rolls back with the mail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from exobot.core.model import IncomingMail, Ticket

MAX_FLAG_NOTE = 500
MAX_ACK_PARAGRAPH = 4000


@dataclass(frozen=True)
class Flag:
    """A mark on a ticket: a short code (`non-member`), a plain-text note, who set it."""

    code: str
    note: str
    source: str


@dataclass
class NewMail:
    """A mail that just opened a ticket or was added to one, in the transaction storing it."""

    ticket: Ticket
    mail: IncomingMail
    created: bool
    connection: Any = None  # the transaction's connection (awaitable `execute`)
    source: str = ""  # who is looking at it (a plugin's name), recorded on its flags
    flags: list[Flag] = field(default_factory=list)
    ack_paragraphs: list[str] = field(default_factory=list)

    def flag(self, code: str, note: str = "") -> None:
        """Record a flag on the ticket (a history entry, shown in chat and on its page)."""
        code = " ".join(str(code).split())[:64]
        if not code:
            raise ValueError("a flag needs a code")
        self.flags.append(Flag(code, str(note).strip()[:MAX_FLAG_NOTE], self.source))

    def add_ack_paragraph(self, text: str) -> None:
        """Add a paragraph (plain text, in the ticket's language) to the acknowledgement mail.
        Only a mail that opens a ticket is acknowledged; on other mail it has no effect."""
        # Plain text for a text/plain mail: line breaks kept, other control characters dropped.
        text = "".join(ch for ch in str(text) if ch in "\n\t" or ch.isprintable()).strip()
        if text:
            self.ack_paragraphs.append(text[:MAX_ACK_PARAGRAPH])

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a statement in the mail's transaction (commits or rolls back with it)."""
        if self.connection is None:
            raise RuntimeError("this mail has no transaction to run statements in")
        return await self.connection.execute(statement, *args, **kwargs)

    def scoped(self, source: str) -> NewMail:
        """A fresh view for one hook: its flags and paragraphs are kept apart until `merge`,
        so a hook that fails leaves nothing behind."""
        return NewMail(self.ticket, self.mail, self.created, self.connection, source)

    def merge(self, other: NewMail) -> None:
        """Take the flags and paragraphs a hook's view collected."""
        self.flags.extend(other.flags)
        self.ack_paragraphs.extend(other.ack_paragraphs)


MailHook = Callable[[NewMail], Awaitable[None]]
