"""Every chat command is answered, its no-op cases too, on the real Synapse (issue 14):
taking your own ticket says so, taking someone else's names and pings only them, giving
to someone who is no operator is refused, display names instead of ids, `!tanca`,
`tancat`, `tiquet de suport N`, the nearest command for a typo, the short `!ajuda`."""

from __future__ import annotations

import pytest
from harness import member_mail, unique, wait_until
from matrix_harness import body_of, reply_to_of, thread_root_of, unique_tag
from test_matrix_flow import Chat

from devstack.matrix_setup import invite
from exobot.core.actions import Channel
from exobot.i18n import say

pytestmark = pytest.mark.asyncio

PASSWORD = "pere-contrasenya"


@pytest.fixture
async def chat(make_instance, matrix_setup, volunteer) -> Chat:
    setup = matrix_setup()
    inst = make_instance(matrix=setup, web=True)
    await inst.start()
    return Chat(inst, setup, await volunteer(setup))


async def answer_to(
    chat: Chat, text: str, thread: str | None, queue: str = "suport", *, seen_in: str = ""
) -> str:
    """Send `text` (in `thread`) and return the body of the bot's answer to it: a message
    replying to that very event (or, with `seen_in`, a bot message in the thread holding
    those words: a move's pointer)."""
    event_id, mark = await chat.command(text, thread=thread, queue=queue)

    def answers(e: dict) -> bool:
        if reply_to_of(e) == event_id:
            return True
        return bool(seen_in) and thread_root_of(e) == thread and seen_in in (body_of(e) or "")

    answer = await chat.bot_says(
        answers,
        queue=queue,
        after=mark,
        what=f"the answer to {text!r}",
    )
    return body_of(answer) or ""


def ca(msgid: str, **params: object) -> str:
    return say("ca", msgid, **params)


async def test_every_command_and_its_no_op_cases_are_answered(chat: Chat):
    number, root, member = await chat.mail_ticket(subject="Antena desalineada")
    ref = f"suport#{number}"
    vol = chat.setup.volunteer_user_id
    stranger = f"@ningu{unique_tag()}:localhost"
    # (command, what the answer must contain: None for "any answer"), by action. A command
    # added to the registry without its cases here fails the test.
    cases: dict[str, list[tuple[str, str | None]]] = {
        "take": [
            ("!agafa", None),
            ("!agafa", ca("{ticket} is already yours: nothing to change.", ticket=ref)),
        ],
        "give": [
            (f"!dona {stranger}", stranger),
            (f"!dona {vol}", ref),  # already theirs
        ],
        "untake": [("!deixa", None), ("!deixa", ca("{ticket} already has no owner.", ticket=ref))],
        "reply": [("!respon Ja ho mirem.", None)],
        "comment": [("!comenta El veí també.", None)],
        "title": [
            ("!titol Antena de la Marta", None),
            ("!titol Antena de la Marta", ca("{ticket} already has that title.", ticket=ref)),
        ],
        "status": [
            ("!estat obert", ca("{ticket} is already {status}.", ticket=ref, status=ca("open"))),
            ("!estat aturat", None),
        ],
        "open": [("!obre", None), ("!obre", ref)],
        "stall": [("!atura", None), ("!atura", ref)],
        "resolve": [("!tanca", None), ("!resol", ref)],
        "reject": [("!rebutja", None), ("!rebutja", ref)],
        "show": [("!mostra", "Antena de la Marta")],
        "history": [("!historial", "Antena de la Marta")],
        "list": [("!llista tots", ref), ("!llista tresoreria", ca("No tickets"))],
        "search": [("!cerca antena", ref), ("!cerca paraulainexistent", "paraulainexistent")],
        "new": [("!nou veina@example.org Trucada: sense connexió", None)],
        "accept": [
            (
                "!accepta",
                ca("{ticket} has no mail from an unverified sender to accept.", ticket=ref),
            )
        ],
        "cc": [
            ("!cc +veina@example.org", None),
            (
                "!cc +veina@example.org",
                ca("The participants of {ticket} are already so: nothing to change.", ticket=ref),
            ),
        ],
        "unflag": [("!desmarca sensitive", "sensitive")],
        "language": [
            ("!idioma es", ca("Spanish")),
            (
                "!idioma es",
                ca("{ticket} is already mailed in {lang}.", ticket=ref, lang=ca("Spanish")),
            ),
            ("!idioma ca", None),
        ],
        "help": [("!ajuda", "!ajuda tot"), ("!ajuda tot", "!dona"), ("!ajuda agafa", "!agafa")],
        "move": [
            (
                "!mou suport",
                ca("{ticket} is already in queue {queue}.", ticket=ref, queue="suport"),
            ),
            ("!mou tresoreria", None),
        ],
    }
    # Last: the language is the member's (mails in Spanish from here on).
    cases["language"] = [("!idioma es", None), ("!idioma es", ref)]
    # The very last: its link waits for the volunteer to accept the direct chat.
    cases["login"] = [
        (
            "!entra",
            ca(
                "I am sending you a login link by direct message. If I invite you to a direct chat, accept the invitation first: the link arrives once you are in."
            ),
        )
    ]
    commands = {spec.name for spec in chat.inst.app.actions.for_channel(Channel.CHAT)}
    assert commands <= set(cases), f"no cases for {sorted(commands - set(cases))}"
    answered: set[str] = set()
    for name, steps in cases.items():
        if name not in commands:
            continue  # an action of a plugin that is not on here
        for text, expected in steps:
            before = chat.ticket(number)
            moving = text == "!mou tresoreria"
            body = await answer_to(chat, text, root, seen_in="tresoreria" if moving else "")
            assert body.strip(), text
            if expected is not None:
                assert expected in body, (text, body)
            answered.add(name)
            if (
                expected is not None
                and expected != "!ajuda tot"
                and name
                not in (
                    "show",
                    "history",
                    "list",
                    "search",
                    "help",
                    "login",
                    "unflag",
                    "move",
                )
            ):
                # A no-op changed nothing.
                assert chat.ticket(number) == before, text
    assert answered == commands  # every command of the registry was typed and answered
    direct = await chat.vol.accept_invite(chat.bot_id)
    await chat.vol.wait_for(
        direct, lambda e: "/login/link/" in (body_of(e) or ""), what="the login link"
    )
    assert chat.ticket(number)[2] == "tresoreria"


async def test_taking_someone_elses_ticket_names_and_pings_only_them(
    chat: Chat, matrix_login, stack
):
    room = chat.room()
    pere = stack.register_matrix_user(f"pere{unique_tag()}", PASSWORD)["user_id"]
    invite(stack, chat.setup.volunteer_access_token, room, pere)
    pere_client = await matrix_login(pere, PASSWORD, chat.setup.homeserver)
    await pere_client.client.set_displayname("Pere Vila")
    await pere_client.join(room)
    await wait_until(
        lambda: _now(
            chat.inst.app.bot.is_operator(pere)
            and chat.inst.app.bot.names.display_name(pere) == "Pere Vila"
        ),
        what="the bot to see Pere join, with his name",
    )
    assert (pere, "Pere Vila") in chat.inst.app.bot.operators()

    number, root, _ = await chat.mail_ticket()
    body = await answer_to(chat, f"!dona {pere}", root)
    assert "Pere Vila" in body and pere not in body
    await chat.wait_ticket(number, "open", pere)

    event_id, mark = await chat.command("!agafa", thread=root)
    taken = await chat.bot_says(lambda e: reply_to_of(e) == event_id, after=mark)
    content = taken["content"]
    assert "Pere Vila" in body_of(taken)
    assert content["m.mentions"] == {"user_ids": [pere]}
    assert f'<a href="https://matrix.to/#/{pere}">Pere Vila</a>' in content["formatted_body"]
    await chat.wait_ticket(number, "open", chat.setup.volunteer_user_id)

    # !show names the owner with the id in brackets.
    shown = await answer_to(chat, "!mostra", root)
    vol = chat.setup.volunteer_user_id
    assert f"({vol})" in shown


async def test_words_volunteers_type(chat: Chat):
    number, root, _ = await chat.mail_ticket()
    await answer_to(chat, f"!agafa tiquet de suport {number}", root)
    await chat.wait_ticket(number, "open", chat.setup.volunteer_user_id)
    body = await answer_to(chat, "!agaf", root)
    assert "!agafa" in body  # the nearest command
    await answer_to(chat, "!estat tancat", root)
    await chat.wait_ticket(number, "resolved", chat.setup.volunteer_user_id)
    short = await answer_to(chat, "!ajuda", root)
    assert "!dona" not in short and "!agafa" in short and "!ajuda tot" in short


async def test_a_quarantined_mail_links_the_web_page(make_instance, matrix_setup, volunteer):
    setup = matrix_setup()
    inst = make_instance(matrix=setup, web=True, max_size="64KB")
    await inst.start()
    chat = Chat(inst, setup, await volunteer(setup))
    await inst.send(member_mail(unique("membre"), inst.address, subject="Gran", body="x" * 100_000))
    notice = await chat.bot_says(
        lambda e: "#" in (body_of(e) or "") and "/quarantine" in (body_of(e) or ""),
        what="the quarantine announcement",
    )
    inbound_id = inst.scalar("SELECT id FROM inbound_mail WHERE state = 'quarantined'")
    assert f"{inst.web_url}/quarantine#mail-{inbound_id}" in body_of(notice)
    assert "exobot quarantine" not in body_of(notice)
    assert ca("it is bigger than the size limit for mail") in body_of(notice)


async def _now(value: bool) -> bool:
    return value
