"""The mail processor applies a burst of parsed mails in groups, one transaction each, on
SQLite and on PostgreSQL with the writer thread as in production: arrival order, threading and
de-duplication as if mail by mail; one failing mail leaves the others as they would be alone;
a database gone away leaves the whole group waiting; events only after the commit."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from types import SimpleNamespace

import pytest
from clocks import FakeClock
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from test_processor_limits import processor_for, store

from exobot.core.events import OutboxQueued
from exobot.db import inbound
from exobot.db.tables import InboundMailRow, OutboxRow, TicketRow
from exobot.mail import processor as processor_module
from exobot.mail.msgid import MessageIds
from exobot.mail.processor import GROUP_MAX, MailProcessor
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings
from exobot.plugins import Plugin
from exobot.plugins.context import PluginContext
from exobot.plugins.manager import Host, PluginManager, _Run

OWN = "suport@example.org"
I = InboundMailRow.__table__  # noqa: E741
O = OutboxRow.__table__  # noqa: E741
T = TicketRow.__table__
_uids = itertools.count(1)


def mail(subject: str, sender: str = "marta@example.net", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, OWN, subject
    msg["Message-ID"] = headers.pop("Message_ID", f"<{next(_uids)}.{uuid.uuid4().hex}@example.net>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hola, no em funciona internet.")
    return bytes(msg)


@pytest.fixture
def repo(app_repo):  # noqa: ANN001, ANN201 - the repository as the App builds it, both backends
    return app_repo


class HeldFirst:
    """The real parsing sandbox, except that the first mail's parse ends only once the
    `others` after it are parsed: when the processor gets to the first, the rest are ready
    and join its group (without it, how many join depends on the machine's speed)."""

    def __init__(self, sandbox: ParseSandbox, first: bytes, others: int) -> None:
        self.sandbox, self.first, self.others = sandbox, first, others
        self.workers = sandbox.workers
        self._ready = asyncio.Event()
        self._parsed = 0

    async def parse(self, raw: bytes):
        if raw == self.first:
            await self._ready.wait()
            return await self.sandbox.parse(raw)
        try:
            return await self.sandbox.parse(raw)
        finally:
            self._parsed += 1
            if self._parsed >= self.others:
                self._ready.set()


@pytest.fixture
async def sandbox():
    made = ParseSandbox(SandboxSettings(timeout=30.0, memory=256 * MB, workers=2))
    yield made
    await made.close()


@pytest.fixture
def processor(repo, sandbox):
    clock = FakeClock(datetime.now(UTC))
    return processor_for(repo, MessageIds("secret" * 4, "example.org"), clock, sandbox)


def group_sizes(processor: MailProcessor) -> list[int]:
    """The sizes of the groups the processor applies, appended as it applies them."""
    sizes: list[int] = []
    apply_all = processor.service.apply_decided_all

    async def counting(decides):
        sizes.append(len(decides))
        return await apply_all(decides)

    processor.service.apply_decided_all = counting
    return sizes


def grouped(processor: MailProcessor, raws: list[bytes]) -> list[int]:
    """Make the processor's parses end so that the first GROUP_MAX mails form one group; the
    sizes of the groups it applies are appended to the list returned."""
    processor.parser = HeldFirst(processor.parser, raws[0], GROUP_MAX - 1)
    return group_sizes(processor)


async def states(repo, ids: list[int]) -> list[tuple]:
    async with repo.connection() as conn:
        found = await conn.execute(
            select(I.c.state, I.c.ticket_id, I.c.attempts).where(I.c.id.in_(ids)).order_by(I.c.id)
        )
        return [tuple(r) for r in found]


async def count(repo, table, *where) -> int:
    async with repo.connection() as conn:
        return (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar()


BREAKER = "trenca@example.net"


def break_rules_for(sender: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mail rules raise for a mail from `sender` (a rule's bug), as usual for the rest."""
    real_rules = processor_module.run_rules

    async def rules(parsed, context, rules):  # noqa: ANN001, ANN202
        if parsed.from_addr == sender:
            raise ValueError("a rule's bug")
        return await real_rules(parsed, context, rules)

    monkeypatch.setattr(processor_module, "run_rules", rules)


async def test_a_burst_is_applied_in_groups_as_if_mail_by_mail(repo, processor):
    first = mail("No em funciona internet", Message_ID="<primer@example.net>")
    raws = [
        first,
        mail("Alta de sòcia", sender="joan@example.net", Message_ID="<alta@example.net>"),
        mail("Re: No em funciona internet", In_Reply_To="<primer@example.net>"),
        *(mail(f"Avaria {n}", sender=f"veí{n}@example.net") for n in range(3)),
        # The same mail twice (a client that sent it again): one entry, the second a duplicate.
        mail("Alta de sòcia", sender="joan@example.net", Message_ID="<alta@example.net>"),
        mail("Canvi de compte", sender="pere@example.net"),
        mail("Baixa", sender="anna@example.net"),
        mail("Re: Alta de sòcia", sender="joan@example.net", References="<alta@example.net>"),
    ]
    sizes = grouped(processor, raws)
    ids = await store(repo, *raws)

    assert await processor.process_pending() == len(raws)

    assert sizes[0] == GROUP_MAX  # the first eight in one transaction, the rest after
    found = await states(repo, ids)
    tickets = [ticket for _state, ticket, _attempts in found]
    assert [state for state, _t, _a in found] == ["done"] * 6 + ["duplicate"] + ["done"] * 3
    # Numbers in arrival order; the replies threaded into the tickets that came before them,
    # the one in the same group as well as the one in the group after.
    assert tickets[0] < tickets[1] < tickets[3] < tickets[4] < tickets[5] < tickets[7] < tickets[8]
    assert tickets[2] == tickets[0] and tickets[9] == tickets[1] and tickets[6] == tickets[1]
    assert await count(repo, T) == 7
    assert [attempts for _s, _t, attempts in found] == [1] * len(raws)
    # One acknowledgement per new ticket, none for the replies or the duplicate.
    assert await count(repo, O, O.c.template == "ack") == 7


async def test_one_failing_mail_leaves_the_rest_of_its_group_as_if_alone(
    repo, processor, monkeypatch
):
    raws = [mail(f"Avaria {n}", sender=f"veí{n}@example.net") for n in range(GROUP_MAX)]
    raws[5] = mail("trenca les regles", sender=BREAKER)
    break_rules_for(BREAKER, monkeypatch)
    sizes = grouped(processor, raws)
    ids = await store(repo, *raws)

    await processor.process_pending()

    assert sizes == [GROUP_MAX]  # tried together, then one by one
    found = await states(repo, ids)
    assert [state for state, _t, _a in found] == ["done"] * 5 + ["quarantined"] + ["done"] * 2
    # What the failed group wrote was undone: one ticket and one acknowledgement each.
    assert await count(repo, T) == GROUP_MAX - 1
    assert await count(repo, O, O.c.template == "ack") == GROUP_MAX - 1
    async with repo.connection() as conn:
        error = (await conn.execute(select(I.c.error).where(I.c.id == ids[5]))).scalar()
    assert error == 'rules failed: ValueError("a rule\'s bug")'


class Broken(Plugin):
    """A plugin whose new-mail hook raises on every mail."""

    name = "broken"


async def test_a_hook_failing_in_a_group_that_is_undone_counts_once_per_mail(
    repo, processor, monkeypatch
):
    """Three mails whose plugin hook fails, then one whose rules raise: the group is undone and
    its mails handled again one by one, the hook failing again on each. Its failures count once
    per mail (three, not six), so the plugin is not disabled at the fifth."""
    manager = PluginManager(
        SimpleNamespace(plugins={}), Host(processor.service, repo, None, None, None)
    )
    await manager.start()  # no plugin configured: only the manager's loop
    run = _Run("broken", Broken())
    manager._runs["broken"] = run
    ctx = PluginContext(manager, run, Broken.config_model(), manager.host)

    async def hook(new) -> None:  # noqa: ANN001 - a NewMail
        raise RuntimeError("the hook's bug")

    ctx.on_new_mail(hook)
    processor.service.mail_hook = manager.run_mail_hooks
    raws = [mail(f"Avaria {n}", sender=f"veí{n}@example.net") for n in range(3)]
    raws.append(mail("trenca les regles", sender=BREAKER))
    break_rules_for(BREAKER, monkeypatch)
    processor.parser = HeldFirst(processor.parser, raws[0], len(raws) - 1)
    sizes = group_sizes(processor)
    ids = await store(repo, *raws)
    try:
        await processor.process_pending()

        assert sizes == [4]  # tried together, then one by one
        assert [state for state, _t, _a in await states(repo, ids)] == ["done"] * 3 + [
            "quarantined"
        ]
        assert run.failures == {id(hook): 3}
        assert manager.enabled == ["broken"]
    finally:
        await manager.stop()


async def test_a_database_gone_during_a_group_leaves_the_whole_group_waiting(
    repo, processor, monkeypatch
):
    raws = [mail(f"Avaria {n}", sender=f"veí{n}@example.net") for n in range(GROUP_MAX)]
    real_rules = processor_module.run_rules
    calls = 0

    async def cut_third(parsed, context, rules):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OperationalError("SELECT ...", {}, ConnectionError("closed"))
        return await real_rules(parsed, context, rules)

    monkeypatch.setattr(processor_module, "run_rules", cut_third)
    sizes = grouped(processor, raws)
    ids = await store(repo, *raws)

    with pytest.raises(OperationalError):
        await processor.process_pending()

    assert sizes == [GROUP_MAX]
    # Not the mails' fault: none quarantined, none counted, nothing of the group kept.
    assert await states(repo, ids) == [("received", None, 0)] * GROUP_MAX
    assert await count(repo, T) == 0
    assert await count(repo, O) == 0
    assert await processor.process_pending() == GROUP_MAX
    assert [state for state, _t, _a in await states(repo, ids)] == ["done"] * GROUP_MAX


async def test_events_follow_the_groups_commit(repo, processor):
    raws = [mail(f"Avaria {n}", sender=f"veí{n}@example.net") for n in range(GROUP_MAX)]
    sizes = grouped(processor, raws)
    await store(repo, *raws)
    seen: list[int] = []

    async def on_queued(event: OutboxQueued) -> None:
        # Another connection sees what the event is about: the group was committed before.
        seen.append(await count(repo, O, O.c.template == "ack"))

    processor.service.events.subscribe(OutboxQueued, on_queued)

    await processor.process_pending()

    assert sizes == [GROUP_MAX]
    assert seen and set(seen) == {GROUP_MAX}


async def test_mails_tried_before_go_one_by_one(repo, processor):
    raws = [mail(f"Avaria {n}", sender=f"veí{n}@example.net") for n in range(GROUP_MAX)]
    sizes = group_sizes(processor)  # (survivors are not parsed ahead: nothing to hold back)
    ids = await store(repo, *raws)
    async with repo.connection() as conn:  # what a crash leaves: the batch counted once
        await inbound.begin_attempts(conn, ids)

    await processor.process_pending()

    # A second crash must point at the mail being handled, not at a group around it.
    assert sizes == []
    assert [state for state, _t, _a in await states(repo, ids)] == ["done"] * GROUP_MAX
