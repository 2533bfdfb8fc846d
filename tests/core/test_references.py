"""Public ticket references: parsing what operators write and finding the tag in subjects."""

import time

import pytest

from exobot.core.references import (
    find_in_subject,
    format_reference,
    parse_reference,
    subject_tag,
)


def test_format_and_subject_tag():
    assert format_reference("suport", 310) == "suport#310"
    assert subject_tag("suport", 310) == "[suport#310]"


@pytest.mark.parametrize(
    "text",
    [
        "suport#310",
        "Suport #310",
        "SUPORT#310",
        "suport 310",
        "suport # 310",
        "ticket de suport 310",
        "Ticket de Suport #310",
        "#310",
        "# 310",
        "310",
        "  suport#310  ",
    ],
)
def test_accepted_references(text):
    assert parse_reference(text, "suport") == 310


def test_other_prefix_from_config():
    assert parse_reference("tresoreria#7", "tresoreria") == 7
    assert parse_reference("ticket de tresoreria 7", "tresoreria") == 7
    assert parse_reference("#7", "tresoreria") == 7


def test_prefix_is_taken_literally_not_as_a_regex():
    assert parse_reference("s.p#5", "s.p") == 5
    assert parse_reference("sXp#5", "s.p") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "suport#",
        "suport",
        "#",
        "abc",
        "-3",
        "0",
        "#0",
        "suport#0",
        "suport#310x",
        "310x",
        "3 10",
        "suport#-3",
        "tresoreria#310",
        "ticket de tresoreria 310",
        "nosuport#310",
        "suport#310 i més",
        "1234567890123",  # more digits than any ticket number
    ],
)
def test_refused_references(text):
    assert parse_reference(text, "suport") is None


def test_largest_accepted_number():
    assert parse_reference("999999999999", "suport") == 999_999_999_999


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("[suport#12] No em funciona internet", 12),
        ("Re: [Suport#12] No em funciona internet", 12),
        ("RE: Fwd: [SUPORT#12]", 12),
        ("Re: [suport #12]", 12),
        ("Re: el ticket suport#12 encara no va", 12),
        ("suport#12", 12),
        ("Re: suport#12, gràcies", 12),
    ],
)
def test_find_in_subject(subject, number):
    assert find_in_subject(subject, "suport") == number


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "No em funciona internet",
        "nosuport#12",
        "Re: nosuport#12",
        "[suport#0]",
        "Re: [suport#0] hola",
        "suport#12x",
        "suport 12",  # only the tagged or `suport#N` forms count in subjects
        "[tresoreria#12]",
        "#12",
    ],
)
def test_not_found_in_subject(subject):
    assert find_in_subject(subject, "suport") is None


def test_bracketed_tag_wins_over_a_bare_reference():
    assert find_in_subject("suport#5 vs [suport#12]", "suport") == 12


def test_subject_with_other_prefix_from_config():
    assert find_in_subject("Re: [tresoreria#4]", "tresoreria") == 4
    assert find_in_subject("Re: [suport#4]", "tresoreria") is None


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("Re: [eXO #310] Router", 310),  # Request Tracker's tag has a space
        ("Re: [exo#310] Router", 310),
        ("RE: [ EXO  #  310 ]", 310),
        ("[rt.exo.cat #9] dotted rtname", 9),
        ("[rt  exo #4] a name with a space", 4),
        ("[suport#3] [eXO #310]", 3),  # exobot's own tag first
    ],
)
def test_legacy_tags_in_subject(subject, number):
    assert find_in_subject(subject, "suport", ["eXO", "rt.exo.cat", "rt exo"]) == number


@pytest.mark.parametrize(
    "subject",
    ["[altre #310]", "[rtXexoYcat #9]", "eXO #310", "[eXO #0]", "[eXOs #310]", "[xeXO #310]"],
)
def test_legacy_tags_not_configured_or_not_tags(subject):
    assert find_in_subject(subject, "suport", ["eXO", "rt.exo.cat"]) is None
    assert find_in_subject("[eXO #310]", "suport") is None  # no legacy names: no legacy tag


def test_legacy_tags_take_linear_time_on_hostile_subjects():
    hostile = ["[eXO #" + " " * 200_000 + "1" * 13, "[eXO " * 100_000, "[ " * 200_000]
    started = time.process_time()
    for subject in hostile:
        assert find_in_subject(subject, "suport", ["eXO", "e x o"]) is None
    # Linear: milliseconds here; a backtracking pattern would take minutes.
    assert time.process_time() - started < 5
