"""Chat commands: parsing `!command …` messages into intents, queries or coded errors."""

import random

import pytest

from exobot.core.actions import default_registry
from exobot.core.commands import (
    COMMAND_PREFIX,
    CommandError,
    ParsedCommand,
    Query,
    canonical_name,
    is_command,
    parse_command,
)
from exobot.core.intents import (
    AcceptUnverified,
    Comment,
    Give,
    Move,
    OpenTicket,
    Reply,
    SetStatus,
    SetTitle,
    Take,
    Untake,
)
from exobot.core.model import Status

QUEUES = ("suport", "tresoreria", "altes")
# The declared label of each missing argument ("… is missing its LABEL"), a message id.
LABELS = {
    "user": "the user (@name:server)",
    "text": "the text",
    "title": "the title",
    "queue": "the queue",
    "status": "the status",
    "words": "the words to search for",
    "address": "the email address",
}


def missing(command: str, argument: str) -> dict:
    """The params of a missing_argument error: the command, the argument, its label."""
    return {"command": command, "argument": argument, "label": LABELS[argument]}


def parse(text, *, context=None, room_queue=None, prefix="suport", queues=QUEUES):
    return parse_command(
        text, prefix=prefix, queues=queues, context_ticket=context, room_queue=room_queue
    )


def error(text, **kwargs) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse(text, **kwargs)
    return info.value


# --- is_command / canonical_name / the registry ---------------------------------------------


@pytest.mark.parametrize("text", ["!take", "  !agafa suport#3", "\n!X", "!é"])
def test_is_command(text):
    assert is_command(text)


@pytest.mark.parametrize("text", ["", "!", "! take", "!1", "!!take", "take", "hola !take", "  "])
def test_is_not_command(text):
    assert not is_command(text)


@pytest.mark.parametrize(
    ("word", "name"),
    [
        ("take", "take"),
        ("TAKE", "take"),
        ("agafa", "take"),
        ("Agafa", "take"),
        ("dona", "give"),
        ("deixa", "untake"),
        ("respon", "reply"),
        ("comenta", "comment"),
        ("titol", "title"),
        ("títol", "title"),
        ("TÍTOL", "title"),
        ("ti\u0301tol", "title"),  # decomposed accent
        ("mou", "move"),
        ("estat", "status"),
        ("obre", "open"),
        ("atura", "stall"),
        ("resol", "resolve"),
        ("rebutja", "reject"),
        ("mostra", "show"),
        ("historial", "history"),
        ("llista", "list"),
        ("cerca", "search"),
        ("nou", "new"),
        ("accepta", "accept"),
        ("ajuda", "help"),
        ("fly", None),
        ("", None),
        ("!take", None),
    ],
)
def test_canonical_name(word, name):
    assert canonical_name(word) == name


def test_commands_table_is_complete_and_consistent():
    expected = {
        "take", "give", "untake", "reply", "comment", "title", "move", "status", "open",
        "stall", "resolve", "reject", "show", "history", "list", "search", "new", "accept",
        "help", "login", "cc", "unflag", "language",
    }  # fmt: skip
    registry = default_registry()
    assert {spec.name for spec in registry} == expected
    for spec in registry:
        assert spec.usage.startswith(COMMAND_PREFIX + spec.name)
        assert spec.aliases["ca"]
        for word in spec.all_words():
            assert canonical_name(word) == spec.name
    assert registry.get("take").usage == "!take {ref}"
    assert registry.get("give").usage.format(ref="ajuda#N") == "!give ajuda#N @user:server"


# --- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "suport#310",
        "Suport#310",
        "SUPORT #310",
        "suport 310",
        "suport # 310",
        "ticket de suport 310",
        "Ticket de Suport #310",
        "#310",
        "# 310",
        "310",
        "suport#310:",
        "#310,",
    ],
)
def test_reference_forms(ref):
    assert parse(f"!take {ref}") == ParsedCommand("take", intent=Take(310))
    assert parse(f"!reply {ref} hola") == ParsedCommand("reply", intent=Reply(310, "hola"))


def test_reference_uses_given_prefix():
    assert parse("!take ajuda#7", prefix="ajuda").intent == Take(7)
    assert parse("!take ticket de ajuda 7", prefix="ajuda").intent == Take(7)
    assert error("!take suport#7", prefix="ajuda").code == "bad_reference"


def test_context_ticket_allows_leaving_reference_out():
    assert parse("!take", context=5).intent == Take(5)
    assert parse("!reply hola", context=5).intent == Reply(5, "hola")
    assert parse("!status stalled", context=5).intent == SetStatus(5, Status.STALLED)


def test_written_reference_wins_over_context():
    assert parse("!take suport#9", context=5).intent == Take(9)
    assert parse("!reply suport#9 hola", context=5).intent == Reply(9, "hola")
    assert parse("!take #9", context=5).intent == Take(9)
    assert parse("!move 9 altes", context=5).intent == Move(9, "altes")


def test_bare_number_in_thread_is_text_for_free_text_commands():
    assert parse("!reply 2 routers are down", context=5).intent == Reply(5, "2 routers are down")
    assert parse("!comment 3", context=5).intent == Comment(5, "3")
    assert parse("!title 2024 budget", context=5).intent == SetTitle(5, "2024 budget")
    assert parse("!reply 0 problems", context=5).intent == Reply(5, "0 problems")
    # explicit forms still count
    assert parse("!reply suport 2 routers are down", context=5).intent == Reply(
        2, "routers are down"
    )
    assert parse("!reply suport#2 routers", context=5).intent == Reply(2, "routers")


def test_hash_number_in_thread_is_text_for_free_text_commands():
    """Inside a thread `#N` opening free text is text, as a bare number is: only the prefix
    (suport#2) names another ticket there."""
    assert parse("!reply #2 routers", context=5).intent == Reply(5, "#2 routers")
    assert parse("!comment #3 is the port", context=5).intent == Comment(5, "#3 is the port")
    assert parse("!reply # 2 routers", context=5).intent == Reply(5, "# 2 routers")
    assert parse("!reply #0 hola", context=5).intent == Reply(5, "#0 hola")
    # outside a thread, and for other commands, `#N` is still the ticket
    assert parse("!reply #2 routers").intent == Reply(2, "routers")


def test_bare_number_is_reference_outside_thread_and_for_other_commands():
    assert parse("!reply 2 routers are down").intent == Reply(2, "routers are down")
    assert parse("!take 2", context=5).intent == Take(2)
    assert parse("!give 2 @anna:exo.cat", context=5).intent == Give(2, "@anna:exo.cat")


def test_free_text_in_thread_keeps_ordinary_words():
    assert parse("!comment suport tècnic ha trucat", context=5).intent == Comment(
        5, "suport tècnic ha trucat"
    )
    assert parse("!comment suportem el canvi", context=5).intent == Comment(5, "suportem el canvi")
    assert parse("!comment #hashtag", context=5).intent == Comment(5, "#hashtag")


def test_missing_reference():
    e = error("!take")
    assert (e.code, e.params) == ("missing_reference", {"command": "take"})
    assert error("!agafa ara").code == "missing_reference"
    assert error("!reply hola").params == {"command": "reply"}
    assert error("!show").code == "missing_reference"


@pytest.mark.parametrize(
    "ref",
    ["suport#", "suport#abc", "suport#0", "#0", "0", "1234567890123", "#x", "foo#3", "suport0x"],
)
def test_bad_reference(ref):
    e = error(f"!take {ref}")
    assert e.code == "bad_reference"
    assert e.params == {"text": ref}


def test_bad_reference_in_thread():
    assert error("!take 0", context=5).code == "bad_reference"
    assert error("!reply suport#x hola", context=5).code == "bad_reference"
    assert error("!move suport#x altes", context=5).code == "bad_reference"


def test_prefix_alone_without_context_is_bad_reference():
    assert error("!take suport").code == "bad_reference"


def test_queue_named_like_prefix_in_thread():
    assert parse("!move suport", context=5).intent == Move(5, "suport")


def test_reference_must_be_on_first_line():
    assert parse("!reply suport\n2 routers", context=5).intent == Reply(5, "suport\n2 routers")


# --- commands that take nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("take", ParsedCommand("take", intent=Take(3))),
        ("agafa", ParsedCommand("take", intent=Take(3))),
        ("untake", ParsedCommand("untake", intent=Untake(3))),
        ("deixa", ParsedCommand("untake", intent=Untake(3))),
        ("open", ParsedCommand("open", intent=SetStatus(3, Status.OPEN))),
        ("obre", ParsedCommand("open", intent=SetStatus(3, Status.OPEN))),
        ("stall", ParsedCommand("stall", intent=SetStatus(3, Status.STALLED))),
        ("atura", ParsedCommand("stall", intent=SetStatus(3, Status.STALLED))),
        ("resolve", ParsedCommand("resolve", intent=SetStatus(3, Status.RESOLVED))),
        ("resol", ParsedCommand("resolve", intent=SetStatus(3, Status.RESOLVED))),
        ("reject", ParsedCommand("reject", intent=SetStatus(3, Status.REJECTED))),
        ("rebutja", ParsedCommand("reject", intent=SetStatus(3, Status.REJECTED))),
        ("accept", ParsedCommand("accept", intent=AcceptUnverified(3))),
        ("accepta", ParsedCommand("accept", intent=AcceptUnverified(3))),
        ("show", ParsedCommand("show", query=Query("show", ticket=3))),
        ("mostra", ParsedCommand("show", query=Query("show", ticket=3))),
        ("history", ParsedCommand("history", query=Query("history", ticket=3))),
        ("historial", ParsedCommand("history", query=Query("history", ticket=3))),
    ],
)
def test_no_argument_commands(command, expected):
    assert parse(f"!{command} suport#3") == expected
    assert parse(f"!{command.upper()}", context=3) == expected


@pytest.mark.parametrize(
    "command", ["take", "untake", "open", "stall", "resolve", "reject", "show", "history", "accept"]
)
def test_unexpected_argument(command):
    e = error(f"!{command} suport#3 now")
    assert e.code == "unexpected_argument"
    assert e.params == {"command": command, "text": "now"}


def test_unexpected_argument_in_thread():
    e = error("!take ara mateix", context=3)
    assert e.params == {"command": "take", "text": "ara mateix"}


def test_unexpected_argument_echo_is_shortened():
    e = error("!take suport#3 " + "x" * 1000)
    assert e.code == "unexpected_argument"
    assert len(e.params["text"]) <= 80


# --- give ---------------------------------------------------------------------------------


def test_give():
    assert parse("!give suport#3 @anna:exo.cat") == ParsedCommand(
        "give", intent=Give(3, "@anna:exo.cat")
    )
    assert parse("!dona @Anna:Exo.cat", context=3).intent == Give(3, "@Anna:Exo.cat")


@pytest.mark.parametrize("user", ["anna", "anna:exo.cat", "@anna", "@:exo.cat", "@anna:"])
def test_give_bad_user(user):
    e = error(f"!give suport#3 {user}")
    assert (e.code, e.params) == ("bad_user", {"text": user})


def test_give_missing_and_extra():
    e = error("!give suport#3")
    assert (e.code, e.params) == ("missing_argument", missing("give", "user"))
    assert error("!give", context=3).params["argument"] == "user"
    e = error("!give suport#3 @anna:exo.cat please")
    assert (e.code, e.params) == ("unexpected_argument", {"command": "give", "text": "please"})


# --- reply / comment / title --------------------------------------------------------------


def test_reply_and_comment_keep_internal_newlines():
    text = "!reply suport#3 Hola,\n\n  la fibra ja funciona.\nSalut\n  "
    assert parse(text).intent == Reply(3, "Hola,\n\n  la fibra ja funciona.\nSalut")
    assert parse("!comenta\n  first\nsecond\n", context=3).intent == Comment(3, "first\nsecond")
    assert parse("!respon suport#3\nHola").intent == Reply(3, "Hola")
    assert parse("!reply suport#3 a\r\nb").intent == Reply(3, "a\nb")


def test_reply_comment_missing_text():
    for command in ("reply", "comment"):
        e = error(f"!{command} suport#3  ")
        assert (e.code, e.params) == ("missing_argument", missing(command, "text"))
        assert error(f"!{command}", context=3).code == "missing_argument"


def test_title():
    assert parse("!title suport#3 La fibra\n no va ").intent == SetTitle(3, "La fibra no va")
    assert parse("!títol Nou títol", context=3) == ParsedCommand(
        "title", intent=SetTitle(3, "Nou títol")
    )
    e = error("!titol suport#3")
    assert (e.code, e.params) == ("missing_argument", missing("title", "title"))


# --- move ---------------------------------------------------------------------------------


def test_move():
    assert parse("!move suport#3 tresoreria") == ParsedCommand("move", intent=Move(3, "tresoreria"))
    assert parse("!mou TRESORERIA", context=3).intent == Move(3, "tresoreria")


def test_move_errors():
    e = error("!move suport#3 cuina")
    assert e.code == "bad_queue"
    assert e.params == {"queue": "cuina", "known": "altes, suport, tresoreria"}
    e = error("!move suport#3")
    assert e.params == missing("move", "queue")
    assert error("!move suport#3 altes ara").code == "unexpected_argument"


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("stalled", Status.STALLED),
        ("aturat", Status.STALLED),
        ("Resolt", Status.RESOLVED),
        ("open", Status.OPEN),
        ("obert", Status.OPEN),
        ("rebutjat", Status.REJECTED),
        ("new", Status.NEW),
    ],
)
def test_status(word, status):
    assert parse(f"!status suport#3 {word}") == ParsedCommand("status", intent=SetStatus(3, status))
    assert parse(f"!estat {word}", context=3).intent == SetStatus(3, status)


def test_status_errors():
    e = error("!status suport#3 dormint")
    assert e.code == "bad_status"
    assert e.params["word"] == "dormint"
    assert "stalled" in e.params["known"] and "aturat" in e.params["known"]
    e = error("!status suport#3")
    assert e.params == missing("status", "status")
    assert error("!status suport#3 open now").code == "unexpected_argument"


# --- list ---------------------------------------------------------------------------------


def test_list_default():
    assert parse("!list") == ParsedCommand("list", query=Query("list"))
    assert parse("!llista", context=3).query == Query("list")


def test_list_filters_in_any_order():
    expected = Query(
        "list", queue="tresoreria", statuses=(Status.STALLED, Status.OPEN), owner="mine"
    )
    assert parse("!list tresoreria stalled open mine").query == expected
    assert parse("!llista meus aturat Tresoreria obert").query == expected


@pytest.mark.parametrize(
    ("word", "owner"),
    [("mine", "mine"), ("meus", "mine"), ("meves", "mine")]
    + [("unowned", "unowned"), ("lliures", "unowned"), ("sense", "unowned")],
)
def test_list_owner(word, owner):
    assert parse(f"!list {word}").query == Query("list", owner=owner)


@pytest.mark.parametrize("word", ["all", "tots", "totes", "ALL"])
def test_list_all(word):
    assert parse(f"!list {word}").query == Query("list", statuses=tuple(Status))
    assert parse(f"!list stalled {word} altes").query == Query(
        "list", queue="altes", statuses=tuple(Status)
    )


def test_list_repeated_status_is_kept_once():
    assert parse("!list open obert").query == Query("list", statuses=(Status.OPEN,))


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("!list cuina", "cuina"),
        ("!list suport#3", "suport#3"),
        ("!list mine unowned", "unowned"),
        ("!list altes tresoreria", "tresoreria"),
    ],
)
def test_list_bad_argument(text, word):
    e = error(text)
    assert (e.code, e.params) == ("bad_list_argument", {"word": word})


# --- search -------------------------------------------------------------------------------


def test_search():
    assert parse("!search  fibra   caiguda\n") == ParsedCommand(
        "search", query=Query("search", words="fibra caiguda")
    )
    assert parse("!cerca router", context=3).query == Query("search", words="router")
    e = error("!search   ")
    assert (e.code, e.params) == ("missing_argument", missing("search", "words"))


# --- new ----------------------------------------------------------------------------------


def test_new():
    text = "!new anna@example.org La fibra no va\n\nHa trucat a les 10.\nTorna a trucar.\n"
    assert parse(text, room_queue="suport") == ParsedCommand(
        "new",
        intent=OpenTicket(
            requestor="anna@example.org",
            title="La fibra no va",
            text="Ha trucat a les 10.\nTorna a trucar.",
            queue="suport",
        ),
    )
    assert parse("!nou <anna@example.org> Alta", context=3).intent == OpenTicket(
        requestor="anna@example.org", title="Alta"
    )


def test_new_errors():
    e = error("!new")
    assert (e.code, e.params) == ("missing_argument", missing("new", "address"))
    e = error("!new anna title")
    assert e.code == "bad_address" and e.params["text"] == "anna"
    assert "@-sign" in e.params["reason"]
    assert error("!new anna@localhost title").code == "bad_address"
    e = error("!new anna@example.org\nbody only")
    assert (e.code, e.params) == ("missing_argument", missing("new", "title"))


# --- help ---------------------------------------------------------------------------------


def test_help():
    assert parse("!help") == ParsedCommand("help", query=Query("help"))
    assert parse("!ajuda agafa").query == Query("help", topic="take")
    assert parse("!help !TAKE").query == Query("help", topic="take")
    assert parse("!help títol", context=3).query == Query("help", topic="title")
    e = error("!help fly")
    assert (e.code, e.params) == ("unknown_command", {"command": "fly"})
    assert error("!help take please").code == "unexpected_argument"


# --- unknown commands and robustness ------------------------------------------------------


def test_unknown_command():
    e = error("!fly suport#3")
    assert (e.code, e.params) == ("unknown_command", {"command": "fly"})
    assert error("!FLY").params == {"command": "FLY"}
    assert error("hola").code == "unknown_command"
    assert error("").code == "unknown_command"
    assert error("!").code == "unknown_command"


def test_error_messages_are_english_and_never_fail():
    assert str(CommandError("unknown_command", command="fly")) == "Unknown command: !fly"
    assert "needs a ticket reference" in str(CommandError("missing_reference", command="take"))
    assert str(CommandError("made_up", a=1)) == "made_up (a=1)"
    assert str(CommandError("bad_queue")) == "bad_queue"
    e = CommandError("missing_argument", command="give", argument="user")
    assert (e.code, e.params) == ("missing_argument", {"command": "give", "argument": "user"})


FUZZ_PIECES = [
    "!", "!!", "#", "# ", "suport", "suport#", "#3", "3", "0", "9" * 20, "ticket", "de",
    "@", "@a:b", ":", "a@b.c", "\n", "\r\n", " ", "\t", "títol", "ﬁ", "²", "٣", "🙂",
    "\u0301", "\x00", "take", "reply", "list", "help", "new", "give", "move", "status",
    "all", "mine", "open", "altes", "<", ">", "mailto:", ".", ",",
]  # fmt: skip


def test_fuzz_only_command_errors():
    rng = random.Random(310)
    names = [word for spec in default_registry() for word in spec.all_words()]
    texts = ["", "!", "!\n", "   ", "!" + "a" * 10_000, "!reply suport#3 " + "x\n" * 5_000]
    for _ in range(1500):
        head = "!" + rng.choice(names) if rng.random() < 0.8 else rng.choice(FUZZ_PIECES)
        body = "".join(
            rng.choice(FUZZ_PIECES) + rng.choice(["", " "]) for _ in range(rng.randrange(6))
        )
        texts.append(head + rng.choice(["", " ", "\n"]) + body)
    for text in texts:
        for context in (None, 7):
            try:
                result = parse(text, context=context, room_queue="suport")
            except CommandError as e:
                assert e.code
                assert str(e)
            else:
                assert isinstance(result, ParsedCommand)
                assert (result.intent is None) != (result.query is None)
                assert result.name in default_registry()


@pytest.mark.parametrize("text", ["!login", "!entra", "!LOGIN"])
def test_login_is_a_query_in_any_room(text):
    parsed = parse_command(text, prefix="suport", queues=QUEUES)
    assert parsed.query == Query("login")
    assert parsed.intent is None


def test_login_takes_no_argument():
    with pytest.raises(CommandError) as caught:
        parse_command("!login ara", prefix="suport", queues=QUEUES)
    assert caught.value.code == "unexpected_argument"

