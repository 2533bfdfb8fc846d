"""The mail processor with its parsing sandbox: runaways quarantined with the reason, mails after
them still handled in order, unfinished attempts counted, a database gone away not blamed on
the mail, over-size mails told once a day."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from clocks import FakeClock
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from exobot.core.service import ServiceSettings, TicketService
from exobot.db import inbound
from exobot.db.tables import InboundMailRow, OutboxRow
from exobot.mail import processor as processor_module
from exobot.mail.compose import TemplateRenderer
from exobot.mail.msgid import MessageIds
from exobot.mail.outbound import MailSender, SmtpSettings
from exobot.mail.processor import MailProcessor, MailSettings
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings

OWN = "suport@example.org"
I = InboundMailRow.__table__  # noqa: E741
O = OutboxRow.__table__  # noqa: E741
_uids = itertools.count(1)


def mail(subject: str, sender: str = "marta@example.net", body: str = "Hola", **headers) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, OWN, subject
    msg["Message-ID"] = f"<{next(_uids)}.{abs(hash(subject))}@example.net>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return bytes(msg)


@pytest.fixture
def message_ids() -> MessageIds:
    return MessageIds("secret" * 4, "example.org")


@pytest.fixture
def clock() -> FakeClock:
    """The processor's and the service's time: still, until a test moves it."""
    return FakeClock(datetime.now(UTC))


def processor_for(repo, message_ids, clock, sandbox: ParseSandbox) -> MailProcessor:
    """A processor as these tests use it: announcing in chat, 5 acknowledgements a day."""
    service = TicketService(
        repo, message_ids, ServiceSettings(own_address=OWN, announce=True), clock=clock
    )
    settings = MailSettings(
        own_address=OWN,
        prefix="suport",
        ack_limit_per_day=5,
        message_ids=message_ids,
        announce=True,
        max_size=25 * MB,
    )
    return MailProcessor(repo, service, settings, parser=sandbox)


@pytest.fixture
async def processor(repo, message_ids, clock):
    sandbox = ParseSandbox(
        SandboxSettings(timeout=1.0, memory=256 * MB, workers=2, parser="parse_hooks:hostile")
    )
    made = processor_for(repo, message_ids, clock, sandbox)
    yield made
    await sandbox.close()


async def store(repo, *messages: bytes | tuple[bytes, int]) -> list[int]:
    """Store mails as intake does (a (header, size) pair: a mail too big to fetch)."""
    rows = []
    for message in messages:
        uid = next(_uids)
        rows.append((uid, message) if isinstance(message, bytes) else (uid, *message))
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 1, rows)
        found = await conn.execute(
            select(I.c.id).where(I.c.uid.in_([r[0] for r in rows])).order_by(I.c.uid)
        )
        return [row[0] for row in found]


async def rows(repo, ids: list[int]) -> list[tuple]:
    async with repo.connection() as conn:
        found = await conn.execute(
            select(I.c.state, I.c.error, I.c.ticket_id, I.c.attempts)
            .where(I.c.id.in_(ids))
            .order_by(I.c.id)
        )
        return [tuple(r) for r in found]


async def notices(repo) -> list[dict]:
    async with repo.connection() as conn:
        found = await conn.execute(
            select(O.c.recipient, O.c.payload).where(O.c.template == "too_big").order_by(O.c.id)
        )
        return [{"recipient": r, **p} for r, p in found]


async def test_runaways_are_quarantined_with_the_reason_and_the_rest_keeps_order(repo, processor):
    ids = await store(
        repo,
        mail("primer"),
        mail("s'encalla", body="SLOW-PARSE"),
        mail("segon"),
        mail("menja memòria", body="HOG-PARSE"),
        mail("es mor", body="CRASH-PARSE"),
        mail("tercer"),
    )
    assert await processor.process_pending() == 6
    states = await rows(repo, ids)
    assert [s[0] for s in states] == ["done", "quarantined", "done", "quarantined"] * 1 + [
        "quarantined",
        "done",
    ]
    assert states[1][1] == "parsing took longer than 1 s"
    assert states[3][1] == "parsing needed more than 256 MB"
    assert states[4][1] == "parsing crashed (SIGSEGV)"
    # Tickets in arrival order although parses ran side by side.
    assert [states[i][2] for i in (0, 2, 5)] == [1, 2, 3]
    # Announced in chat like any quarantined mail.
    async with repo.connection() as conn:
        announced = await conn.execute(
            select(O.c.payload).where(O.c.kind == "chat").order_by(O.c.id)
        )
        errors = [p["error"] for (p,) in announced if p.get("type") == "quarantine"]
    assert errors == [states[1][1], states[3][1], states[4][1]]


async def test_quarantined_runaway_is_not_retried_automatically(repo, processor):
    (slow,) = await store(repo, mail("lent", body="SLOW-PARSE"))
    await processor.process_pending()
    assert (await rows(repo, [slow]))[0][0] == "quarantined"
    assert await processor.process_pending() == 0  # a later pass leaves it alone
    assert await processor.process(slow) == "quarantined"  # an operator's retry: same limits


async def test_a_mail_whose_processing_never_finished_twice_is_quarantined_unparsed(
    repo, processor
):
    poison, after = await store(repo, mail("verinós", body="SLOW-PARSE"), mail("després"))
    async with repo.connection() as conn:  # two earlier passes died while parsing it
        await conn.execute(update(I).where(I.c.id == poison).values(attempts=2))
    await processor.process_pending()
    (state, error, _ticket, _attempts), done = await rows(repo, [poison, after])
    assert state == "quarantined"
    assert error.startswith("processing was interrupted 2 times")
    assert done[0] == "done"


async def test_a_stopped_pass_does_not_count_against_the_mail(repo, processor):
    (slow,) = await store(repo, mail("aturat", body="SLOW-PARSE"))
    processor.parser.settings = SandboxSettings(timeout=60.0, parser="parse_hooks:hostile")
    task = asyncio.create_task(processor.process_pending())

    async def counted() -> bool:
        return (await rows(repo, [slow]))[0][3] == 1

    for _ in range(600):
        if await counted():
            break
        await asyncio.sleep(0.05)
    assert await counted()  # the attempt was counted before parsing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await rows(repo, [slow]) == [("received", None, None, 0)]


async def test_a_crash_while_parsing_counts_and_the_third_time_it_is_set_aside(repo, processor):
    (poison,) = await store(repo, mail("mata el procés"))
    for attempt in (1, 2):
        async with repo.connection() as conn:  # as the pass before a crash does
            await inbound.begin_attempts(conn, [poison])
        assert (await rows(repo, [poison]))[0][3] == attempt
    await processor.process_pending()
    assert (await rows(repo, [poison]))[0][0] == "quarantined"


async def test_a_crash_in_the_middle_of_a_batch_sets_nobody_aside(repo, processor):
    ids = await store(repo, *(mail(f"lot {n}") for n in range(5)))
    async with repo.connection() as conn:  # what a crash leaves: the batch counted once
        await inbound.begin_attempts(conn, ids)
    await processor.process_pending()
    assert [row[0] for row in await rows(repo, ids)] == ["done"] * 5
    # Survivors of a crash were each counted on their own this time: a second crash would
    # point at the mail being handled, not at the whole batch.
    assert [row[3] for row in await rows(repo, ids)] == [2] * 5


async def test_survivors_of_a_crash_are_counted_one_at_a_time(repo, processor):
    """A second crash must be counted against the mail being handled only: the survivors
    after it are not counted yet (nor parsed ahead) while it is handled."""
    ids = await store(repo, *(mail(f"lot {n}") for n in range(4)))
    async with repo.connection() as conn:  # what a crash leaves: the batch counted once
        await inbound.begin_attempts(conn, ids)
    seen = []
    handle = processor._handle

    async def noting(pending_mail, outcome):
        seen.append([row[3] for row in await rows(repo, ids)])
        return await handle(pending_mail, outcome)

    processor._handle = noting
    await processor.process_pending()
    assert seen == [[2, 1, 1, 1], [2, 2, 1, 1], [2, 2, 2, 1], [2, 2, 2, 2]]
    assert [row[0] for row in await rows(repo, ids)] == ["done"] * 4


@pytest.mark.parametrize("where", ["rules", "apply"])
async def test_a_database_gone_while_handling_leaves_the_mail_waiting_not_quarantined(
    repo, processor, monkeypatch, where
):
    """A cut database connection while the rules read or while a mail is recorded is not the
    mail's fault: the pass fails, the mail is neither quarantined nor counted, and the next
    pass makes its ticket."""
    # Mail by mail, so that the first is done before the cut (a group of mails stays waiting
    # whole: tests/mail/test_processor_groups.py).
    monkeypatch.setattr(processor_module, "GROUP_MAX", 1)
    first, second = await store(repo, mail("primer"), mail("segon"))
    calls = 0

    def cut_second(real):
        async def call(*args):
            nonlocal calls
            calls += 1
            if calls == 2:  # the second mail: the connection is cut under it
                raise OperationalError("SELECT ...", {}, ConnectionError("closed"))
            return await real(*args)

        return call

    if where == "rules":
        monkeypatch.setattr(processor_module, "run_rules", cut_second(processor_module.run_rules))
    else:
        processor.service.apply_decided = cut_second(processor.service.apply_decided)
    with pytest.raises(OperationalError):
        await processor.process_pending()
    assert await rows(repo, [first, second]) == [
        ("done", None, 1, 1),
        ("received", None, None, 0),
    ]
    async with repo.connection() as conn:
        announced = await conn.execute(select(O.c.payload).where(O.c.kind == "chat"))
        assert [p for (p,) in announced if p.get("type") == "quarantine"] == []

    assert await processor.process_pending() == 1
    assert (await rows(repo, [second]))[0][:3] == ("done", None, 2)


# ------------------------------------------------------------------------------ too big


def header_of(raw: bytes) -> bytes:
    return raw.split(b"\n\n", 1)[0] + b"\n\n"


async def test_a_mail_too_big_is_quarantined_and_its_sender_told_once(repo, processor):
    big = header_of(mail("Fotos del router", sender="Marta <Marta@Example.net>"))
    big2 = header_of(mail("Més fotos", sender="marta@example.net"))
    other = header_of(mail("Factura", sender="pere@example.net"))
    ids = await store(
        repo, (big, 30 * MB + MB // 2), (big2, 40 * MB), (other, 26 * MB), mail("normal")
    )
    await processor.process_pending()
    states = await rows(repo, ids)
    assert [s[:2] for s in states[:3]] == [
        ("quarantined", "too big: 30.5 MB, limit 25 MB"),
        ("quarantined", "too big: 40 MB, limit 25 MB"),
        ("quarantined", "too big: 26 MB, limit 25 MB"),
    ]
    assert states[3][0] == "done"
    sent = await notices(repo)
    assert [(n["recipient"], n["subject"]) for n in sent] == [
        ("marta@example.net", "Fotos del router"),  # once for Marta, not for her second mail
        ("pere@example.net", "Factura"),
    ]
    assert (sent[0]["size"], sent[0]["limit"]) == (30 * MB + MB // 2, 25 * MB)
    # A retry of a header-only mail cannot make a ticket out of the header.
    assert await processor.process(ids[0]) == "quarantined"
    assert len(await notices(repo)) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"From": "MAILER-DAEMON@example.net"},
        {"From": OWN},
        {"From": "josé@example.org"},
    ],
)
async def test_no_too_big_notice_to_automatic_mail_or_ourselves(repo, processor, headers):
    fields = {"From": "marta@example.net", "To": OWN, "Subject": "Gros"} | headers
    # Written by hand: a mailer that puts raw UTF-8 in headers sends them like this.
    raw = "".join(f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
    ids = await store(repo, (raw.encode(), 30 * MB))
    await processor.process_pending()
    assert (await rows(repo, ids))[0][0] == "quarantined"
    assert await notices(repo) == []


async def test_too_big_notice_counts_against_the_daily_acknowledgements(repo, processor, clock):
    processor.settings = MailSettings(**{**processor.settings.__dict__, "ack_limit_per_day": 1})
    first, _big = await store(
        repo,
        mail("Primer", sender="anna@example.net"),
        (header_of(mail("Gros", "anna@example.net")), 30 * MB),
    )
    await processor.process_pending()
    assert (await rows(repo, [first]))[0][0] == "done"  # acknowledged: the cap of 1 is used
    assert await notices(repo) == []
    # And the notice counts too: after one, a new ticket from the sender is not acknowledged.
    clock.advance(days=2)  # what was queued is two days old now: the day's caps start afresh
    await store(repo, (header_of(mail("Gros 2", sender="anna@example.net")), 30 * MB))
    await store(repo, mail("Segon", sender="anna@example.net"))
    await processor.process_pending()
    async with repo.connection() as conn:
        recent = await conn.execute(
            select(O.c.template).where(
                O.c.recipient == "anna@example.net",
                O.c.created_at > clock.now() - timedelta(hours=1),
            )
        )
        assert [t for (t,) in recent] == ["too_big"]


async def test_the_too_big_notice_as_the_member_reads_it(repo, processor, message_ids, clock):
    ids = await store(repo, (header_of(mail("Fotos del router")), 30 * MB + MB // 2))
    await processor.process_pending()
    (payload,) = await notices(repo)
    sender = MailSender(
        repo,
        processor.service,
        SmtpSettings("127.0.0.1", 25),
        TemplateRenderer("ca"),
        from_address=OWN,
        from_name="Suport eXO",
        loop_marker=message_ids.loop_marker(),
        clock=clock,
    )
    clock.advance(days=3)  # the Date header is the sender's clock when it builds the mail
    message = sender.build({k: v for k, v in payload.items() if k != "recipient"})
    assert message["Date"].datetime == clock.now().replace(microsecond=0)
    assert message["Subject"] == "Missatge massa gran: Fotos del router"
    assert message["To"] == "marta@example.net"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == (await _message_id(repo, ids[0]))
    text = message.get_content()
    assert "«Fotos del router»" in text and "fa 30,5 MB i el límit és de 25 MB" in text
    assert "adjunts més petits" in text and "enllaç" in text
    assert message_ids.verify(message["Message-ID"]) == 0  # ours, about no ticket


async def _message_id(repo, inbound_id: int) -> str:
    async with repo.connection() as conn:
        return (await conn.execute(select(I.c.message_id).where(I.c.id == inbound_id))).scalar()


# ------------------------------------------------------------------------------ property


def _hostile_parts():
    """MIME trees with odd headers, HTML and nesting, rendered as raw bytes."""
    from hypothesis import strategies as st

    text = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
    )
    html = st.builds(
        lambda tag, n, inner: f"<{tag}>" * n + inner + f"</{tag}>" * n,
        st.sampled_from(["ul><li", "div", "pre", "table><tr><td", "blockquote", "b"]),
        st.integers(0, 300),
        text,
    )
    leaf = st.one_of(
        st.builds(lambda t: ("text/plain; charset=utf-8", t), text),
        st.builds(lambda h: ("text/html", h), html),
        st.builds(lambda h: ("text/html", "<pre>" + " " * h + "x</pre>"), st.integers(0, 5000)),
        st.builds(
            lambda b: ('application/octet-stream; name="f"', b.hex()), st.binary(max_size=64)
        ),
        st.builds(lambda c, t: (f"text/plain; charset={c}", t), text, text),
    )
    return st.recursive(
        leaf,
        lambda children: st.builds(
            lambda kind, parts, boundary: (f"multipart/{kind}", (boundary, parts)),
            st.sampled_from(["mixed", "alternative", "related", "report"]),
            st.lists(children, max_size=4),
            st.text("abcXYZ0123'()+_,-./:=?é", min_size=0, max_size=12),
        ),
        max_leaves=12,
    )


def _render(node) -> str:
    ctype, content = node
    if not ctype.startswith("multipart/"):
        return f"Content-Type: {ctype}\r\n\r\n{content}"
    boundary, parts = content
    body = "".join(f"--{boundary}\r\n{_render(part)}\r\n" for part in parts)
    return f'Content-Type: {ctype}; boundary="{boundary}"\r\n\r\n{body}--{boundary}--'


def _property_mails():
    from hypothesis import strategies as st

    header_text = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=60
    )
    structured = st.builds(
        lambda subject, sender, tree, extra: (
            f"From: {sender}\r\nTo: {OWN}\r\nSubject: {subject}\r\n{extra}"
            f"MIME-Version: 1.0\r\n{_render(tree)}"
        ).encode("utf-8", "surrogatepass"),
        header_text,
        st.one_of(header_text, st.just("marta@example.net")),
        _hostile_parts(),
        st.sampled_from(["", "Reply-To: \r\n", "Cc: a@b, , <>\r\n", "X-Odd:\r\n continued\r\n"]),
    )
    return st.one_of(structured, st.binary(max_size=300))


async def test_every_mail_ends_as_a_ticket_an_entry_or_a_quarantine_item(repo, message_ids):
    """Property: random and hostile mails through the real parser in its sandbox never stay
    `received` and never stop the mails after them."""
    from hypothesis import HealthCheck, given, settings

    service = TicketService(repo, message_ids, ServiceSettings(own_address=OWN))
    mail_settings = MailSettings(
        own_address=OWN, prefix="suport", ack_limit_per_day=5, message_ids=message_ids
    )
    sandbox = ParseSandbox(SandboxSettings(timeout=10.0, workers=2))
    processor = MailProcessor(repo, service, mail_settings, parser=sandbox)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(raws=st_lists(_property_mails()))
    def check(raws: list[bytes]) -> None:
        # Hypothesis drives a plain function: it runs in a thread and hands the async work
        # to this test's loop, where the database and the sandbox live.
        asyncio.run_coroutine_threadsafe(one_example(raws), loop).result()

    async def one_example(raws: list[bytes]) -> None:
        # Its own sender: the per-sender hourly limit must not be what holds it.
        normal = mail("i després, un de normal", sender=f"n{next(_uids)}@example.net")
        ids = await store(repo, *raws, normal)
        await processor.process_pending()
        states = await rows(repo, ids)
        for state, error, ticket, _attempts in states:
            assert state in ("done", "duplicate", "quarantined"), (state, error)
            assert (ticket is not None) if state == "done" else True
            assert error if state == "quarantined" else True
        assert states[-1][0] == "done"

    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(check)
    finally:
        await sandbox.close()


def st_lists(strategy):
    from hypothesis import strategies as st

    return st.lists(strategy, min_size=1, max_size=4)
