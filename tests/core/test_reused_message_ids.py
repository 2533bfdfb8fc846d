"""A Message-ID used again by another mail: a copy of a mail (delivered twice, fetched again)
is a duplicate, but a different mail that reuses the id (a web form or a script that sends
every mail with one fixed id) is kept, under an id of its own. It used to be dropped as a
duplicate: the member's mail was lost without a word. Copies and reuses are told apart by
the Date header: a copy was sent at the same instant."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from stack_fixtures import app_repository
from test_long_message_ids import processor_on, raw_mail, sandbox, states, store, stored_ids

from exobot.core.service import reused_message_id, sent_stamp
from exobot.db.tables import EntryRow, OutboxRow

__all__ = ["sandbox"]  # the fixture, used by name

E = EntryRow.__table__
O = OutboxRow.__table__  # noqa: E741

FORM_ID = "<formulari@web.example>"
MONDAY = "Date: Mon, 30 Nov 2026 10:00:00 +0100"
MONDAY_IN_UTC = "Date: Mon, 30 Nov 2026 09:00:00 +0000"
TUESDAY = "Date: Tue, 01 Dec 2026 18:30:00 +0100"


def form(sender: str, *headers: str) -> bytes:
    return raw_mail("Alta de sòcia", FORM_ID, *headers, sender=sender)


async def acks(repo) -> int:
    async with repo.connection() as conn:
        rows = await conn.execute(select(O.c.payload).where(O.c.kind == "mail"))
        return sum(1 for (payload,) in rows if payload.get("template") == "ack")


async def sent_ats(repo) -> list[str | None]:
    async with repo.connection() as conn:
        rows = await conn.execute(select(E.c.data).where(E.c.kind == "mail_in").order_by(E.c.id))
        return [data.get("sent_at") for (data,) in rows]


def test_the_reused_id_is_the_same_for_every_copy_and_apart_for_each_instant():
    monday = datetime(2026, 11, 30, 9, tzinfo=UTC)
    tuesday = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)
    assert reused_message_id(FORM_ID, monday) == reused_message_id(FORM_ID, monday)
    assert reused_message_id(FORM_ID, monday) != reused_message_id(FORM_ID, tuesday)
    assert reused_message_id(FORM_ID, monday) != reused_message_id("<other@x>", monday)
    assert reused_message_id(FORM_ID, monday).endswith("@exobot.invalid>")
    assert sent_stamp(monday) == "2026-11-30T09:00:00+00:00"


async def test_two_mails_sharing_an_id_both_become_tickets_and_their_copies_are_duplicates(
    db_url, sandbox
):
    """In one pass (one group, one transaction) and in later passes alike."""
    async with app_repository(db_url) as repo:
        processor = processor_on(repo, sandbox)
        first = await store(
            repo, form("marta@example.net", MONDAY), form("pere@example.net", TUESDAY)
        )
        await processor.process_pending()
        (marta_state, marta, _), (pere_state, pere, _) = await states(repo, first)
        assert (marta_state, pere_state) == ("done", "done")
        assert marta != pere  # two members, two tickets, each acknowledged
        assert await acks(repo) == 2
        tuesday = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)
        assert set(await stored_ids(repo)) >= {FORM_ID, reused_message_id(FORM_ID, tuesday)}
        assert await sent_ats(repo) == ["2026-11-30T09:00:00+00:00", "2026-12-01T17:30:00+00:00"]

        # Copies of either (the same instant, even written in another zone) are duplicates.
        copies = await store(
            repo, form("marta@example.net", MONDAY_IN_UTC), form("pere@example.net", TUESDAY)
        )
        await processor.process_pending()
        assert await states(repo, copies) == [
            ("duplicate", marta, None),
            ("duplicate", pere, None),
        ]
        # A third use of the id, another day, is a third ticket.
        third = await store(
            repo, form("anna@example.net", "Date: Wed, 02 Dec 2026 08:00:00 +0100")
        )
        await processor.process_pending()
        [(state, anna, _)] = await states(repo, third)
        assert state == "done" and anna not in (marta, pere)
        assert await acks(repo) == 3


async def test_without_a_date_to_compare_a_repeated_id_stays_a_duplicate(db_url, sandbox):
    """No Date on the new mail, or none recorded for the old one (a mail recorded before
    dates were kept): nothing tells a copy from a reuse, and a copy is by far the likelier."""
    async with app_repository(db_url) as repo:
        processor = processor_on(repo, sandbox)
        [undated] = await store(repo, form("marta@example.net"))
        await processor.process_pending()
        [(_, ticket, _)] = await states(repo, [undated])
        later = await store(
            repo, form("pere@example.net", TUESDAY), form("anna@example.net")
        )
        await processor.process_pending()
        assert await states(repo, later) == [
            ("duplicate", ticket, None),
            ("duplicate", ticket, None),
        ]
        assert await acks(repo) == 1
