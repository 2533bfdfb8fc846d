"""The status lifecycle against the transition table of DESIGN.md §1, row by row."""

import pytest

from exobot.core.lifecycle import (
    TRANSITIONS,
    Happening,
    LifecycleError,
    check_status_change,
    parse_status,
    status_after,
)
from exobot.core.model import Status

ALL = list(Status)
NEW, OPEN, STALLED, RESOLVED, REJECTED = (
    Status.NEW,
    Status.OPEN,
    Status.STALLED,
    Status.RESOLVED,
    Status.REJECTED,
)

# The table of DESIGN.md §1, written out independently of lifecycle.TRANSITIONS:
# happening -> (status before -> status after) for every status.
UNCHANGED = {s: s for s in ALL}
OPENS_NEW = {**UNCHANGED, NEW: OPEN}
EXPECTED = {
    # take, give, reply to the member: new -> open, other statuses unchanged
    Happening.TAKE: OPENS_NEW,
    Happening.GIVE: OPENS_NEW,
    Happening.REPLY: OPENS_NEW,
    # untake, comment, title, move: unchanged
    Happening.UNTAKE: UNCHANGED,
    Happening.COMMENT: UNCHANGED,
    Happening.TITLE: UNCHANGED,
    Happening.MOVE: UNCHANGED,
    # a member's mail reopens stalled/resolved/rejected; new stays new, open stays open
    Happening.MEMBER_MAIL: {NEW: NEW, OPEN: OPEN, STALLED: OPEN, RESOLVED: OPEN, REJECTED: OPEN},
    # automatic mail (out-of-office, bounce): unchanged, never reopens
    Happening.AUTOMATIC_MAIL: UNCHANGED,
    Happening.BOUNCE: UNCHANGED,
    # mail from an unverified sender: unchanged
    Happening.UNVERIFIED_MAIL: UNCHANGED,
}

CASES = [
    pytest.param(happening, before, after, id=f"{happening.value}-{before.value}")
    for happening, row in EXPECTED.items()
    for before, after in row.items()
]


def test_the_table_covers_every_happening():
    assert set(EXPECTED) == set(Happening)
    assert set(TRANSITIONS) == set(Happening)


@pytest.mark.parametrize(("happening", "before", "after"), CASES)
def test_status_after(happening, before, after):
    assert status_after(before, happening) is after


@pytest.mark.parametrize("before", ALL)
@pytest.mark.parametrize("happening", [Happening.AUTOMATIC_MAIL, Happening.BOUNCE])
def test_automatic_mail_never_reopens(happening, before):
    assert status_after(before, happening) is not OPEN or before is OPEN


# --- explicit status change by an operator -------------------------------------------------

EXPLICIT = [
    pytest.param(before, target, id=f"{before.value}-to-{target.value}")
    for before in ALL
    for target in ALL
]


@pytest.mark.parametrize(("before", "target"), EXPLICIT)
def test_explicit_status_change(before, target):
    if target is NEW or target is before:
        with pytest.raises(LifecycleError):
            check_status_change(before, target)
    else:
        assert check_status_change(before, target) is target


@pytest.mark.parametrize("before", [s for s in ALL if s is not NEW])
def test_never_back_to_new(before):
    with pytest.raises(LifecycleError, match="new"):
        check_status_change(before, NEW)


@pytest.mark.parametrize("status", [s for s in ALL if s is not NEW])
def test_same_status_is_refused_with_a_clear_message(status):
    with pytest.raises(LifecycleError, match=f"already {status.value}"):
        check_status_change(status, status)


# --- status words ----------------------------------------------------------------------------

WORDS = [
    ("new", NEW),
    ("open", OPEN),
    ("stalled", STALLED),
    ("resolved", RESOLVED),
    ("rejected", REJECTED),
    ("nou", NEW),
    ("obert", OPEN),
    ("aturat", STALLED),
    ("resolt", RESOLVED),
    ("tancat", RESOLVED),
    ("rebutjat", REJECTED),
]


@pytest.mark.parametrize(("word", "status"), WORDS)
def test_status_words_in_english_and_catalan(word, status):
    assert parse_status(word) is status


@pytest.mark.parametrize(("word", "status"), WORDS)
def test_status_words_ignore_case_and_spaces(word, status):
    assert parse_status(f"  {word.upper()} ") is status


@pytest.mark.parametrize("word", ["", "closed", "tancada", "opened", "obert!", "res olt", "suport"])
def test_unknown_status_words_are_refused(word):
    with pytest.raises(LifecycleError, match="unknown status"):
        parse_status(word)


def test_unknown_status_message_lists_the_known_ones():
    with pytest.raises(LifecycleError) as error:
        parse_status("closed")
    for status in ALL:
        assert status.value in str(error.value)
