"""What a volunteer reads when a command is not understood: `!llista` filters in the plural,
a reference with a wrong separator, the "is missing" sentence in Catalan and Spanish, and
suggestions by synonym rather than spelling alone."""

import pytest

from exobot.core.commands import CommandError, parse_command, suggest_command
from exobot.core.model import Status
from exobot.wording import Wording

QUEUES = ("suport", "tresoreria")


def parse(text: str, context: int | None = None):
    return parse_command(text, prefix="suport", queues=QUEUES, context_ticket=context)


def refusal(text: str, context: int | None = None) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse(text, context)
    return info.value


def said(text: str, language: str, context: int | None = None) -> str:
    """The answer to a refused command, in `language`."""
    error = refusal(text, context)
    return Wording(language).error(error.code, error.params).body


# --- !llista: plural and feminine status words, `tot` ---------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("oberts", Status.OPEN),
        ("obertes", Status.OPEN),
        ("nous", Status.NEW),
        ("noves", Status.NEW),
        ("aturats", Status.STALLED),
        ("aturades", Status.STALLED),
        ("tancats", Status.RESOLVED),
        ("resoltes", Status.RESOLVED),
        ("rebutjats", Status.REJECTED),
        ("abiertos", Status.OPEN),
        ("nuevas", Status.NEW),
        ("parados", Status.STALLED),
        ("cerradas", Status.RESOLVED),
        ("rechazados", Status.REJECTED),
        ("Oberts.", Status.OPEN),
    ],
)
def test_list_takes_plural_and_feminine_statuses(word, status):
    assert parse(f"!llista {word}").query.statuses == (status,)


def test_list_tot_is_every_status():
    assert parse("!llista tot").query.statuses == tuple(Status)
    query = parse("!llista tresoreria oberts aturats meus").query
    assert (query.queue, query.statuses, query.owner) == (
        "tresoreria",
        (Status.OPEN, Status.STALLED),
        "mine",
    )


@pytest.mark.parametrize(
    ("language", "statuses"),
    [
        ("ca", "(nou, obert, aturat, resolt, rebutjat)"),
        ("es", "(nuevo, abierto, parado, resuelto, rechazado)"),
        ("en", "(new, open, stalled, resolved, rejected)"),
    ],
)
def test_a_bad_list_filter_names_the_status_words(language, statuses):
    answer = said("!llista vells", language)
    assert "vells" in answer and statuses in answer


def test_the_status_words_named_are_accepted():
    """Every status word the refusal names, in any language, works as a filter."""
    for language in ("ca", "es", "en"):
        answer = said("!llista vells", language)
        named = answer.split("(")[1].split(")")[0].split(", ")
        assert [parse(f"!llista {word}").query.statuses for word in named] == [
            (status,) for status in Status
        ]


# --- a reference with a wrong separator ---------------------------------------------------


@pytest.mark.parametrize("typed", ["suport-3", "suport/3", "suport_3", "Suport-3", "suport-3,"])
def test_a_reference_with_a_wrong_separator_is_asked_about(typed):
    error = refusal(f"!agafa {typed}")
    assert (error.code, error.params["suggestion"]) == ("bad_reference", "suport#3")
    answer = Wording("ca").error(error.code, error.params).body
    assert typed.rstrip(",") in answer and "suport#3?" in answer
    assert "falta" not in answer


def test_a_wrong_separator_is_asked_about_inside_a_thread_too():
    """Inside a thread the typo would otherwise reply to this ticket instead of suport#3."""
    error = refusal("!respon suport-3 ja funciona", context=5)
    assert (error.code, error.params["suggestion"]) == ("bad_reference", "suport#3")
    # Text that merely starts with the prefix is still text.
    text = parse("!respon suport-tècnic ja funciona", context=5).args["text"]
    assert text == "suport-tècnic ja funciona"


# --- "is missing": no agreement to get wrong ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("!cerca", "ca", "!cerca necessita les paraules que cal cercar."),
        ("!cc suport#3", "ca", "!cc necessita les adreces (+adreça per afegir"),
        ("!dona suport#3", "ca", "!dona necessita l'usuari (@nom:servidor)."),
        ("!nou", "ca", "!nou necessita l'adreça de correu."),
        ("!cerca", "es", "!search necesita las palabras que buscar."),
        ("!cc suport#3", "es", "!cc necesita las direcciones (+dirección para añadir"),
        ("!dona suport#3", "es", "!give necesita el usuario (@nombre:servidor)."),
    ],
)
def test_a_missing_argument_reads_well(text, language, expected):
    assert said(text, language).startswith(expected)


# --- suggestions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant", "catalan"),
    [
        ("done", "resolve", "resol"),
        ("assign", "give", "dona"),
        ("assigna", "give", "dona"),
        ("asigna", "give", "dona"),
        ("close", "resolve", "resol"),
        ("cierra", "resolve", "resol"),
        ("buscar", "search", "cerca"),
        ("busca", "search", "cerca"),
        ("unassign", "untake", "deixa"),
    ],
)
def test_a_synonym_suggests_the_command_meant(typed, meant, catalan):
    assert suggest_command(typed) == meant
    error = refusal(f"!{typed} suport#1")
    assert error.params == {"command": typed, "suggestion": meant}
    assert f"!{catalan}?" in Wording("ca").error(error.code, error.params).body
    assert f"!{meant}?" in Wording("es").error(error.code, error.params).body


@pytest.mark.parametrize("text", ["!ordre", "!ORDRE", "!orden", "!command", "!ajuda ordre"])
def test_the_help_placeholder_points_to_the_whole_list(text):
    assert suggest_command(text.split()[-1]) is None
    error = refusal(text)
    assert error.code == "unknown_command" and "suggestion" not in error.params
    assert "!ajuda tot" in Wording("ca").error(error.code, error.params).body
    assert "!help all" in Wording("es").error(error.code, error.params).body


def test_spelling_still_suggests_the_nearest():
    assert refusal("!agaf suport#1").params == {"command": "agaf", "suggestion": "agafa"}
    assert "Volies dir !agafa?" in said("!agaf suport#1", "ca")
