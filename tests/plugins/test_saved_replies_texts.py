"""Saved replies' pure rules, without servers: the substitution (literal, never a general
format), the language the text must be in, the requestor's display name, names and the web form."""

from __future__ import annotations

from pathlib import Path

import pytest
from exobot_saved_replies.texts import (
    BAD_LANGUAGE,
    BAD_NAME,
    NO_TEXT,
    TOO_LONG,
    Values,
    choose_language,
    choose_text,
    normal_name,
    read_form,
    requestor_name,
    substitute,
    wanted_language,
)

MARIA = Values(name="Maria Puig", ticket="suport#7")

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "saved-replies"


def test_name_nom_and_ticket_are_replaced_literally():
    text = "Hola {nom},\n{name}: sobre {ticket} i {ticket}."
    assert substitute(text, MARIA) == "Hola Maria Puig,\nMaria Puig: sobre suport#7 i suport#7."


@pytest.mark.parametrize(
    "text",
    [
        "{0.__class__}",
        "{0.__class__.__mro__}",
        "{x",
        "}{",
        "{{name}}x",
        "{name!r}",
        "{name:>10}",
        "{ticket.__init__}",
        "{NAME}",
        "%(name)s $name ${name}",
    ],
)
def test_nothing_else_is_formatted(text):
    # The literal {name} inside "{{name}}" is still a placeholder, braces around it stay.
    expected = text.replace("{name}", "Maria Puig")
    assert substitute(text, MARIA) == expected


def test_a_name_holding_a_placeholder_is_not_substituted_again():
    sly = Values(name="{ticket} {0.__class__}", ticket="suport#7")
    assert substitute("Hola {name} ({ticket})", sly) == "Hola {ticket} {0.__class__} (suport#7)"


def test_an_unknown_name_leaves_nothing_behind():
    assert substitute("Hola {nom},", Values("", "suport#1")) == "Hola,"
    assert substitute("{name}, sobre {ticket}", Values("", "suport#1")) == ", sobre suport#1"


def test_only_the_ticket_language_and_the_configured_one_when_it_is_unknown():
    # The mail around the text (greeting, signature, headers) speaks the ticket's language: a
    # text in any other would make one mail in two languages (audit of member mails, item 6).
    assert choose_language({"ca", "es", "en"}, "es", "ca") == "es"
    assert choose_language({"ca", "en"}, "es", "ca") is None
    assert choose_language({"en"}, "es", "ca") is None
    assert choose_language({"ca"}, "fr", "ca") == "ca"  # the ticket's unknown: the configured
    assert choose_language({"ca", "es"}, None, "ca") == "ca"
    assert choose_language({"es", "en"}, None, "ca") is None
    assert choose_language(set(), "ca", "ca") is None
    assert choose_text({"ca": "Hola", "en": "Hi"}, "es", "en") is None
    assert choose_text({"ca": "Hola", "es": "Hola"}, "es", "ca") == ("es", "Hola")
    assert choose_text({}, "ca", "ca") is None
    assert (wanted_language("es", "ca"), wanted_language(None, "ca")) == ("es", "ca")


def test_the_requestors_latest_named_mail_gives_the_name():
    mails = [
        {"from": "maria@example.org", "from_name": "Maria"},
        {"from": "pere@example.org", "from_name": "Pere"},  # a participant: not the requestor
        {"from": "MARIA@example.org", "from_name": "Maria Puig"},
        {"from": "maria@example.org", "from_name": ""},  # a later mail without a name
        {"from": "pere@example.org", "from_name": "Pere Serra"},
    ]
    assert requestor_name("maria@example.org", mails) == "Maria Puig"
    assert requestor_name("joan@example.org", mails) == ""
    assert requestor_name("maria@example.org", []) == ""
    assert requestor_name("a@b.org", [{"from": "a@b.org", "from_name": " A\n\tB "}]) == "A B"


@pytest.mark.parametrize(
    "hostile",
    [
        "IMPORTANT: your account is suspended, log in at https://evil.example/exo within 24h. Anna",
        "[Reset your password](https://evil.example) Anna",
        "support@exo.cat",
        "Anna " + "Puig " * 20,  # longer than any name greeted
    ],
)
def test_a_from_name_no_person_has_is_not_put_into_the_reply(hostile):
    """The reply is signed by the association and copied to the Cc participants: a display
    name that carries a message, a link or an address greets nobody, as in the core's mails;
    an earlier mail's usable name still does."""
    assert requestor_name("a@b.org", [{"from": "a@b.org", "from_name": hostile}]) == ""
    earlier = [
        {"from": "a@b.org", "from_name": "Anna Puig"},
        {"from": "a@b.org", "from_name": hostile},
    ]
    assert requestor_name("a@b.org", earlier) == "Anna Puig"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("benvinguda", "benvinguda"),
        ("  Benvinguda ", "benvinguda"),
        ("fibra-2", "fibra-2"),
        ("a_b", "a_b"),
        ("dues paraules", None),
        ("", None),
        ("-guio", None),
        ("àccent", None),
        ("x" * 41, None),
        ("{name}", None),
    ],
)
def test_names_are_one_lower_case_word(raw, name):
    assert normal_name(raw) == name


def test_the_form_is_read_and_checked():
    good = read_form({"name": " Hola ", "language": "es", "text": "  Hola {nom}\r\nAdéu \r\n"}, 50)
    assert (good.name, good.language, good.text, good.problems) == (
        "hola",
        "es",
        "Hola {nom}\nAdéu",
        (),
    )
    bad = read_form({"name": "dues paraules", "language": "fr", "text": "   "}, 50)
    assert bad.problems == (BAD_NAME, BAD_LANGUAGE, NO_TEXT)
    assert bad.name == "dues paraules"  # shown again as typed
    long = read_form({"name": "x", "language": "ca", "text": "a" * 51}, 50)
    assert long.problems == (TOO_LONG,)
    assert read_form({"name": "x", "language": "ca", "text": "a" * 50}, 50).problems == ()
    missing = read_form({}, 50)
    assert missing.problems == (BAD_NAME, BAD_LANGUAGE, NO_TEXT)


def test_the_plugins_catalogs_are_complete():
    # Every message id in the plugin's code and templates, translated in ca and es, with the
    # same placeholders (the .po files, as translators' tools open them).
    from exobot import catalogs

    assert catalogs.check(catalogs.plugin_domain(PLUGIN_DIR)) == []


def test_its_settings_are_checked_under_their_key():
    from exobot.config import ConfigError, parse_config

    base = {
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "imap.example.org", "username": "suport", "password": "imap-pw"},
            "smtp": {"host": "smtp.example.org"},
        }
    }
    config = parse_config(base | {"plugins": {"saved-replies": {"max_length": 2000}}}, env={})
    assert config.plugins["saved-replies"]["max_length"] == 2000
    with pytest.raises(ConfigError) as caught:
        parse_config(
            base | {"plugins": {"saved-replies": {"max_length": 5, "colour": "x"}}}, env={}
        )
    problems = "\n".join(caught.value.problems)
    assert "plugins.saved-replies.max_length" in problems
    assert "plugins.saved-replies.colour" in problems
