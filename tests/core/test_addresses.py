"""The one address rule: what is accepted, in which form, and why the rest is refused."""

import pytest

from exobot.core.addresses import (
    MAX_ADDRESS_LENGTH,
    BadAddress,
    address_problem,
    is_valid_address,
    normalize_address,
)
from exobot.core.languages import LANGUAGES
from exobot.i18n import say
from exobot.wording import ADDRESS_REASONS


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("marta@example.net", "marta@example.net"),
        ("Marta@Example.NET", "marta@example.net"),
        ("  joan+exo@example.org ", "joan+exo@example.org"),
        ("joan@exàmple.org", "joan@xn--exmple-jta.org"),  # IDN domain kept as ASCII
        ("o'brien@example.co.uk", "o'brien@example.co.uk"),
    ],
)
def test_accepted_addresses_come_back_canonical(text: str, canonical: str) -> None:
    assert normalize_address(text) == canonical
    assert is_valid_address(text)


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        ("josé@example.org", "before the @-sign"),  # would need SMTPUTF8
        ("a@exa_mple.org", "invalid characters"),
        ("a@b", "period"),
        ("a@b..org", "two periods"),
        ("joan@example.org.", "end with a period"),
        ('"a b"@example.org', "Quoting"),
        ("root@localhost", "period"),
        ("x@exobot.invalid", "special-use"),
        ("no-at-sign.example.org", "@-sign"),
        ("Marta <marta@example.net>", ""),
        ("a@example.org\r\nBcc: spy@evil.example", ""),
        ("", ""),
    ],
)
def test_refused_addresses_say_why(text: str, reason_part: str) -> None:
    problem = address_problem(text)
    assert problem is not None and reason_part in problem
    with pytest.raises(BadAddress) as raised:
        normalize_address(text)
    assert raised.value.reason == problem
    assert not is_valid_address(text)


def test_overlong_input_is_refused_before_any_parsing() -> None:
    text = "a" * 10_000 + "@example.org"
    assert address_problem(text) == f"longer than {MAX_ADDRESS_LENGTH} characters"


def test_non_text_is_refused() -> None:
    assert address_problem(None) == "not text"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("josé@example.org", "needs_smtputf8"),
        ("a@exa_mple.org", "bad_domain"),
        ("a@b", "bad_domain"),
        ("a@b..org", "bad_dots"),
        ('"a b"@example.org', "quoted"),
        ("x@exobot.invalid", "reserved_domain"),
        ("no-at-sign.example.org", "no_at"),
        ("a b@example.org", "bad_local"),
        ("a" * 300 + "@example.org", "too_long"),
        ("Marta <marta@example.net>", "invalid"),
    ],
)
def test_each_refusal_has_a_code_the_catalogs_translate(text: str, code: str) -> None:
    with pytest.raises(BadAddress) as raised:
        normalize_address(text)
    assert raised.value.code == code
    assert code in ADDRESS_REASONS
    for language in LANGUAGES:  # STRICT: a missing translation raises
        assert say(language, ADDRESS_REASONS[code])
