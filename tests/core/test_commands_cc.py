"""`!cc` (participants) and the one address rule in chat commands."""

from __future__ import annotations

import pytest
from test_commands import error, parse

from exobot.core.intents import ChangeParticipants


def test_cc_adds_and_removes_several_addresses():
    parsed = parse("!cc suport#4 +Anna@Example.org -pere@example.org, +<joan@example.net>")
    assert parsed.name == "cc"
    assert parsed.intent == ChangeParticipants(
        4, add=("anna@example.org", "joan@example.net"), remove=("pere@example.org",)
    )


def test_cc_can_remove_an_address_no_mail_could_be_sent_to():
    assert parse("!cc 4 -José@example.org").intent == ChangeParticipants(
        4, remove=("josé@example.org",)
    )


def test_cc_inside_a_thread_and_in_catalan():
    assert parse("!còpia +anna@example.org", context=7).intent == ChangeParticipants(
        7, add=("anna@example.org",)
    )
    assert parse("!copia 7 -anna@example.org").intent == ChangeParticipants(
        7, remove=("anna@example.org",)
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("!cc suport#4", "missing_argument"),
        ("!cc suport#4 anna@example.org", "bad_cc_argument"),
        ("!cc suport#4 +", "bad_cc_argument"),
        ("!cc suport#4 +josé@example.org", "bad_address"),
        ("!cc suport#4 +a@exa_mple.org", "bad_address"),
        ("!cc +anna@example.org", "missing_reference"),
        ("!cc suport#4 " + " ".join(f"+a{n}@example.org" for n in range(21)), "unexpected_argument"),
    ],
)
def test_cc_errors(text, code):
    assert error(text).code == code


@pytest.mark.parametrize(
    "address", ["joan@example.org.", "josé@example.org", "a@exa_mple.org", "a@b", "a@b..org"]
)
def test_new_refuses_what_no_mail_could_be_sent_to_with_the_reason(address):
    refused = error(f"!new {address} Trucada")
    assert refused.code == "bad_address"
    assert refused.params["text"] == address and refused.params["reason"]


def test_new_keeps_the_canonical_address():
    assert parse("!new Joan@Example.ORG Trucada").intent.requestor == "joan@example.org"
