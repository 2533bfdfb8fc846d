"""Mention pills: a chat client writes a pill's display name in the plain body and the link
(with the user id) in the formatted one. Only a command's user argument reads a pill as its
user id, at that argument's place; free text (a reply mailed to a member, a comment, a title)
keeps the display name the volunteer typed, so no volunteer's Matrix id reaches a member."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from exobot.core.commands import CommandError, parse_command
from exobot.core.model import EntryKind
from exobot.db.tables import OutboxRow
from exobot.matrix.bot import MAX_FORMATTED_CHARS, _mentions
from tests.matrix.test_bot import ANNA, PERE, ROOM, make_bot, message, open_ticket

ANNA_PILL = f'<a href="https://matrix.to/#/{ANNA}">Anna</a>'
PERE_PILL = f'<a href="https://matrix.to/#/{PERE}">Pere &amp; Co</a>'


async def said(bot, number: int, body: str, formatted: str) -> None:  # noqa: ANN001
    """Anna sends `body` (its formatted twin `formatted`) in the queue room."""
    room = bot.client.nio.rooms[ROOM]
    await bot.handle_event(room, message(ANNA, body.format(n=number), formatted.format(n=number)))


async def entries(repo, number: int, kind: EntryKind) -> list[str]:  # noqa: ANN001
    return [e.body for e in await repo.history(number) if e.kind is kind]


async def test_a_pill_inside_reply_text_stays_the_display_name(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    text = "Hola Marta, la {} us trucarà demà. Anna"
    await said(
        bot,
        number,
        "!reply suport#{n} " + text.format("Anna"),
        "!reply suport#{n} " + text.format(ANNA_PILL),
    )
    sent = await entries(repo, number, EntryKind.MAIL_OUT)  # the acknowledgement, the reply
    assert [body for body in sent if body and body.startswith("Hola")] == [text.format("Anna")]
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        mails = (await conn.execute(select(table.c.payload).where(table.c.kind == "mail"))).all()
    assert mails and not any(ANNA in str(row.payload) for row in mails)


async def test_pills_in_comments_and_titles_stay_as_typed(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    await said(
        bot,
        number,
        "!comment suport#{n} Pep ha parlat amb la Anna",
        "!comment suport#{n} Pep ha parlat amb la " + ANNA_PILL,
    )
    await said(
        bot,
        number,
        "!title suport#{n} Anna no té internet",
        "!title suport#{n} " + ANNA_PILL + " no té internet",
    )
    assert await entries(repo, number, EntryKind.COMMENT) == ["Pep ha parlat amb la Anna"]
    assert (await repo.get_ticket(number)).title == "Anna no té internet"


async def test_a_pill_as_gives_user_argument_becomes_the_user_id(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    await said(bot, number, "!give suport#{n} Anna", "!give suport#{n} " + ANNA_PILL)
    assert (await repo.get_ticket(number)).owner == ANNA
    # A display name of several words, with markup escaped in the formatted body.
    await said(bot, number, "!dona suport#{n} Pere & Co", "!dona suport#{n} " + PERE_PILL)
    assert (await repo.get_ticket(number)).owner == PERE


async def test_a_display_name_that_opens_a_longer_word_is_not_rewritten(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    await said(
        bot,
        number,
        "!comment suport#{n} Annabel ha trucat a Anna",
        "!comment suport#{n} Annabel ha trucat a " + ANNA_PILL,
    )
    assert await entries(repo, number, EntryKind.COMMENT) == ["Annabel ha trucat a Anna"]
    with pytest.raises(CommandError) as refused:  # `Annabel` is no mention of Anna
        parse_command(
            "!give suport#3 Annabel", prefix="suport", queues={"suport"}, mentions={"Anna": ANNA}
        )
    assert (refused.value.code, refused.value.params) == ("bad_user", {"text": "Annabel"})


def test_the_longest_name_wins_and_what_follows_a_last_user_argument_is_refused():
    mentions = {"Anna": ANNA, "Anna Maria": PERE}
    parsed = parse_command(
        "!give suport#3 Anna Maria", prefix="suport", queues={"suport"}, mentions=mentions
    )
    assert parsed.intent.owner == PERE
    with pytest.raises(CommandError) as refused:
        parse_command(
            "!give suport#3 Anna gràcies", prefix="suport", queues={"suport"}, mentions=mentions
        )
    assert refused.value.code == "unexpected_argument"


def test_a_name_pills_give_to_two_users_is_no_mention():
    other = '<a href="https://matrix.to/#/@anna:other.example">Anna</a>'
    content = {"formatted_body": f"{ANNA_PILL} {PERE_PILL} {other}"}
    assert _mentions(content) == {"Pere & Co": PERE}


def test_a_formatted_body_over_the_cap_is_not_read():
    assert _mentions({"formatted_body": "!give 3 " + ANNA_PILL}) == {"Anna": ANNA}
    padded = {"formatted_body": "!give 3 " + ANNA_PILL + " " * MAX_FORMATTED_CHARS}
    assert _mentions(padded) == {}


def test_a_pill_label_with_a_zero_padded_reference_is_read_without_raising():
    """html.unescape raises on a reference of more than 4,300 digits, zeros included: the
    command of such a message was never answered (only logged as failed)."""
    label = "&#" + "0" * 4400 + "65;nna"  # "Anna"
    pill = f'<a href="https://matrix.to/#/{ANNA}">{label}</a>'
    assert _mentions({"formatted_body": "!give 3 " + pill}) == {"Anna": ANNA}
