"""A volunteer's Matrix markdown reaches the member as plain text (audit of member mails,
item 2): Element's plain `body` is the markdown source ("**Importante**", "`ping`"), so the
text mailed is read from the `formatted_body` (exobot.matrix.plain); a comment keeps the body
as typed. The conversion's rules, its bounds on hostile HTML, and the bot's use of it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from exobot.core.model import EntryKind
from exobot.db.tables import OutboxRow
from exobot.matrix import plain
from exobot.matrix.plain import plain_text
from tests.matrix.test_bot import ANNA, ROOM, make_bot, message, open_ticket

MARC = "@marc:matrix.exo.cat"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # Emphasis and strike-through lose their marks; code stays as typed, without backticks.
        ("<strong>Importante</strong>: <em>ya</em> <del>no</del> <code>ping 10.1.2.3</code>",
         "Importante: ya no ping 10.1.2.3"),
        # Element's paragraphs and line breaks.
        ("<p>Hola José,</p>\n<p>línea 1<br />línea 2</p>\n",
         "Hola José,\n\nlínea 1\nlínea 2"),
        ("uno<br><br>dos", "uno\n\ndos"),
        # Lists, nested, and an ordered one that starts at 3.
        ("<p>Prueba:</p>\n<ul>\n<li>uno</li>\n<li>dos<ul><li>a</li></ul></li>\n</ul>\n<p>fin</p>",
         "Prueba:\n\n- uno\n- dos\n  - a\n\nfin"),
        ('<ol start="3">\n<li>tres</li>\n<li>cuatro</li>\n</ol>', "3. tres\n4. cuatro"),
        # A quote of two paragraphs, then the volunteer's own words.
        ("<blockquote>\n<p>el router</p>\n<p>no va</p>\n</blockquote>\n<p>Ya está.</p>",
         "> el router\n>\n> no va\n\nYa está."),
        # A code block keeps its lines and spaces.
        ('<pre><code class="language-sh">ping 10.1.2.3\n\n  traceroute 10.1.2.3\n</code></pre>',
         "ping 10.1.2.3\n\n  traceroute 10.1.2.3"),
        # Links: "text (url)" when they differ, the text alone when they are the same.
        ('<a href="https://exo.cat/alta">el formulario</a>',
         "el formulario (https://exo.cat/alta)"),
        ('<a href="https://exo.cat">https://exo.cat</a> '
         '<a href="http://www.exo.cat/">www.exo.cat</a>',
         "https://exo.cat www.exo.cat"),
        ('<a href="mailto:tresoreria@exo.cat">tresoreria@exo.cat</a>', "tresoreria@exo.cat"),
        ('<a href="javascript:alert(1)">aquí</a>', "aquí"),
        # A pill is its display name; one labelled with the bare id is named by the lookup.
        (f'<a href="https://matrix.to/#/{MARC}">Marc Vidal</a> pasará', "Marc Vidal pasará"),
        (f'<a href="https://matrix.to/#/{MARC}">{MARC}</a> pasará', "Marc V. pasará"),
        # A hand-typed id and an emoji shortcode Element did not convert stay as typed.
        (f"<strong>Ojo</strong>: {MARC} vendrá :smile:", f"Ojo: {MARC} vendrá :smile:"),
        # The reply fallback goes, with its link into the room; unknown tags keep their text.
        ('<mx-reply><blockquote><a href="https://matrix.to/#/!r:x/$e">In reply to</a> '
         "<br>antes</blockquote></mx-reply><span data-mx-spoiler>sí</span> <foo>bar</foo>",
         "sí bar"),
        # Entities decoded once, never raising (html.unescape raises past 4,300 digits).
        ("a &amp;lt; b &lt;3 &#" + "0" * 4400 + "65;", "a &lt; b <3 A"),
        ("<script>alert(1)</script><style>p{}</style>solo esto", "solo esto"),
    ],
)
def test_formatted_body_as_plain_text(html: str, text: str) -> None:
    assert plain_text(html, {MARC: "Marc V."}.get) == text


def test_bounds_give_up_and_leave_the_typed_body() -> None:
    assert plain_text("x" * (plain.MAX_HTML_CHARS + 1)) is None
    assert plain_text("<p>x</p>" * (plain.MAX_TAGS // 2 + 1)) is None
    assert plain_text("<p>x</p>" * (plain.MAX_TAGS // 2)) is not None


@pytest.mark.parametrize(
    "hostile",
    [
        "<a href='x' " * (plain.MAX_HTML_CHARS // 12),  # html.parser alone: 21 s
        "<x" * (plain.MAX_HTML_CHARS // 2),  # html.parser alone: 10 s
        "<!--" * (plain.MAX_HTML_CHARS // 4),  # html.parser alone: 5 s
    ],
)
def test_hostile_html_is_read_in_linear_time(hostile: str) -> None:
    # Python 3.11's html.parser rescans to the end from every unclosed tag (the times above,
    # for 64 KB); the linear pass in front of it takes some 0.1 s. The deadline is generous.
    started = time.perf_counter()
    text = plain_text(hostile)
    assert time.perf_counter() - started < 5
    assert text is not None and "<" not in text.replace("<x", "").replace("<a", "")


# --- the bot ---------------------------------------------------------------------------------

BODY = (
    "!reply suport#{n} Hola Marta,\n\n**Importante**: desconecta el router 30 segundos. "
    f"Si no va, Marc Vidal o {MARC} pasará mañana :smile:\n\n- prueba 1\n- prueba 2\n\n"
    "`ping 10.1.2.3`"
)
HTML = (
    "<p>!reply suport#{n} Hola Marta,</p>\n<p><strong>Importante</strong>: desconecta el "
    f'router 30 segundos. Si no va, <a href="https://matrix.to/#/{MARC}">Marc Vidal</a> o '
    f"{MARC} pasará mañana :smile:</p>\n<ul>\n<li>prueba 1</li>\n<li>prueba 2</li>\n</ul>\n"
    "<p><code>ping 10.1.2.3</code></p>\n"
)
MAILED = (
    "Hola Marta,\n\nImportante: desconecta el router 30 segundos. "
    f"Si no va, Marc Vidal o {MARC} pasará mañana :smile:\n\n- prueba 1\n- prueba 2\n\n"
    "ping 10.1.2.3"
)


async def said(bot, number: int, body: str, formatted: str | None) -> None:  # noqa: ANN001
    room = bot.client.nio.rooms[ROOM]
    formatted = formatted.replace("{n}", str(number)) if formatted else None
    await bot.handle_event(room, message(ANNA, body.replace("{n}", str(number)), formatted))


async def mailed_texts(repo) -> list[str]:  # noqa: ANN001
    table = OutboxRow.__table__
    async with repo.connection() as conn:
        rows = await conn.execute(
            select(table.c.payload).where(table.c.kind == "mail").order_by(table.c.id)
        )
    return [row.payload["text"] for row in rows if row.payload.get("template") == "reply"]


async def test_an_element_reply_is_mailed_as_plain_text_and_a_comment_stays_as_typed(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    await said(bot, number, BODY, HTML)
    assert await mailed_texts(repo) == [MAILED]
    sent = [e.body for e in await repo.history(number) if e.kind is EntryKind.MAIL_OUT]
    assert sent[-1] == MAILED  # what the history and the web show is what was mailed
    comment = "!comment suport#{n} **ojo**: el `router` de casa"
    formatted = "!comment suport#{n} <strong>ojo</strong>: el <code>router</code> de casa"
    await said(bot, number, comment, formatted)
    comments = [e.body for e in await repo.history(number) if e.kind is EntryKind.COMMENT]
    assert comments == ["**ojo**: el `router` de casa"]


async def test_a_title_is_plain_and_a_message_without_html_goes_as_typed(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    title = "!title suport#{n} <strong>Router</strong> sin luz"
    await said(bot, number, "!title suport#{n} **Router** sin luz", title)
    assert (await repo.get_ticket(number)).title == "Router sin luz"
    # Element sends no formatted body when nothing was formatted: the body is the text.
    await said(bot, number, "!reply suport#{n} 2 * 3 = 6, sin más", None)
    assert (await mailed_texts(repo))[-1] == "2 * 3 = 6, sin más"


async def test_a_formatted_body_naming_another_ticket_is_not_followed(repo):
    bot = make_bot(repo)
    number = await open_ticket(repo, bot)
    await said(bot, number, "!reply suport#{n} **hola**", "!reply suport#999 <b>hola</b>")
    assert await mailed_texts(repo) == ["**hola**"]
