"""In-Reply-To and References may hold any number of ids: threading looks at a bounded number
of them (In-Reply-To's, then the last References), so the work a mail costs inside its write
transaction, on the one database writer, is bounded whatever the headers hold.

Counted, not timed: lookups of the rule, and statements of a whole processed mail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from clocks import FakeClock
from sqlalchemy import event, select
from test_processor_limits import processor_for, store
from test_rules import IDS, FakeContext, parsed

from exobot.db.tables import InboundMailRow
from exobot.mail.rules import MAX_THREAD_IDS, ThreadByMessageId, Verdict, thread_ids
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings

MANY = 100_000
I = InboundMailRow.__table__  # noqa: E741


def refs(count: int, prefix: str = "r") -> tuple[str, ...]:
    return tuple(f"<{prefix}{n}@elsewhere.example>" for n in range(count))


@dataclass
class CountingContext(FakeContext):
    """The rules' context, counting the Message-ID lookups."""

    asked: list[str] = field(default_factory=list)

    async def ticket_for_message(self, message_id: str) -> int | None:
        self.asked.append(message_id)
        return await super().ticket_for_message(message_id)


async def thread(mail, ctx: CountingContext) -> Verdict:
    verdict = Verdict()
    await ThreadByMessageId().apply(mail, ctx, verdict)
    return verdict


async def test_100000_references_cost_a_bounded_number_of_lookups():
    ctx = CountingContext()
    verdict = await thread(parsed(references=refs(MANY)), ctx)
    assert verdict.ticket is None
    assert len(ctx.asked) == MAX_THREAD_IDS <= 20


async def test_100000_in_reply_to_ids_are_bounded_too():
    ctx = CountingContext()
    await thread(parsed(in_reply_to=refs(MANY, "p"), references=refs(MANY)), ctx)
    assert len(ctx.asked) <= MAX_THREAD_IDS


def test_in_reply_to_first_then_the_last_references_nearest_first():
    mail = parsed(in_reply_to=("<parent@x>",), references=(*refs(MANY), "<parent@x>"))
    tried = thread_ids(mail)
    assert tried[0] == "<parent@x>"  # named once, though both headers carry it
    assert tried[1:] == list(reversed(refs(MANY)))[: MAX_THREAD_IDS - 1]


async def test_the_nearest_known_ancestor_still_threads_the_mail():
    """A long thread quoted in full: the ticket's mail is among the last References."""
    known = "<ticket-mail@member.example>"
    chain = (*refs(MANY), known, *refs(MAX_THREAD_IDS - 2, "later"))
    ctx = CountingContext(known={known: 1})
    verdict = await thread(parsed(references=chain), ctx)
    assert (verdict.ticket, verdict.threaded_by) == (1, "Message-ID")
    assert len(ctx.asked) <= MAX_THREAD_IDS


async def test_our_signed_id_at_the_end_of_many_references_threads_and_trusts():
    ctx = CountingContext()
    verdict = await thread(parsed(references=(*refs(MANY), IDS.mint(1))), ctx)
    assert (verdict.ticket, verdict.trusted) == (1, True)
    assert ctx.asked == []  # signed: no lookup needed


# --- the whole mail through the processor, statements counted ----------------------------------


@pytest.fixture
async def processor(repo):
    """A processor whose parser has time for a mail of some megabytes."""
    sandbox = ParseSandbox(SandboxSettings(timeout=60, memory=512 * MB, workers=1))
    yield processor_for(repo, IDS, FakeClock(datetime.now(UTC)), sandbox)
    await sandbox.close()


def raw_mail(subject: str, message_id: str, references: tuple[str, ...] = ()) -> bytes:
    lines = [
        "From: eve@example.net",
        "To: suport@example.org",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
    ]
    if references:
        lines.append("References: " + "\r\n ".join(references))
    return ("\r\n".join(lines) + "\r\n\r\nHola\r\n").encode()


async def statements_of(repo, processor, raw: bytes) -> tuple[int, str]:
    """How many SQL statements processing this one stored mail ran, and its end state."""
    (inbound_id,) = await store(repo, raw)
    ran: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        ran.append(statement)

    engine = repo.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await processor.process_pending()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    async with repo.connection() as conn:
        state = (await conn.execute(select(I.c.state).where(I.c.id == inbound_id))).scalar_one()
    return len(ran), state


async def test_a_mail_with_100000_references_runs_about_as_many_statements_as_one_without(
    repo, processor
):
    # A first mail warms up what is done once (the sandbox, first reads), not per mail.
    await statements_of(repo, processor, raw_mail("escalfa", "<warm@example.net>"))
    plain, plain_state = await statements_of(repo, processor, raw_mail("hola", "<a@example.net>"))
    many, many_state = await statements_of(
        repo, processor, raw_mail("hola", "<b@example.net>", refs(MANY))
    )
    assert plain_state == many_state == "done"
    assert many <= plain + MAX_THREAD_IDS, (plain, many)
