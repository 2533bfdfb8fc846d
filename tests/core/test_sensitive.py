"""core.sensitive: validated findings (look-alikes failing their checksum left alone), masking,
and properties over generated text (never raises, spans inside the text, masking removes what
was found)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exobot.core.sensitive import (
    SCAN_LIMIT,
    Finding,
    SensitiveKind,
    find_sensitive,
    mask_sensitive,
)

IBAN, CARD, IDENTITY, CREDENTIAL = (
    SensitiveKind.IBAN,
    SensitiveKind.CARD,
    SensitiveKind.IDENTITY,
    SensitiveKind.CREDENTIAL,
)


def found(text: str, kinds=None) -> list[tuple[str, str]]:
    """(kind, value) pairs find_sensitive reports for text."""
    findings = find_sensitive(text) if kinds is None else find_sensitive(text, kinds)
    return [(f.kind.value, text[f.start : f.end]) for f in findings]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("El meu IBAN és ES91 2100 0418 4502 0005 1332, gràcies", [("iban", "ES91 2100 0418 4502 0005 1332")]),
        ("iban: es9121000418450200051332.", [("iban", "es9121000418450200051332")]),
        ("DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("GB82WEST12345698765432", [("iban", "GB82WEST12345698765432")]),
        ("targeta 4111 1111 1111 1111 caduca 12/27", [("card", "4111 1111 1111 1111")]),
        ("mastercard 5555-5555-5555-4444", [("card", "5555-5555-5555-4444")]),
        ("mc 2223003122003222", [("card", "2223003122003222")]),
        ("amex 3782 822463 10005", [("card", "3782 822463 10005")]),
        ("discover 6011111111111117", [("card", "6011111111111117")]),
        ("ref 12 4111 1111 1111 1111 ok", [("card", "4111 1111 1111 1111")]),
        ("DNI 12345678Z", [("identity", "12345678Z")]),
        ("NIE X1234567L i y-1234567-x", [("identity", "X1234567L"), ("identity", "y-1234567-x")]),
        ("DNI 12.345.678-Z", [("identity", "12.345.678-Z")]),
        ("usuari/contrasenya PPP: pepe/secret123", [("credential", "pepe/secret123")]),
        ("wifi key = abc def  \nres més", [("credential", "abc def")]),
        ("la clau wifi: hola", [("credential", "hola")]),
        ("Contraseña: Ñandú-9", [("credential", "Ñandú-9")]),
        ("pwd=hunter2", [("credential", "hunter2")]),
    ],
)
def test_finds_valid_values(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "compte ES91 2100 0418 4502 0005 1333",  # IBAN checksum off by one
        "ES00 0000 0000 0000 0000 0000",
        "XX91 2100 0418 4502 0005 1332",  # no such country
        "targeta 4111-1111-1111-1112",  # Luhn fails
        "0000 0000 0000 0000",  # Luhn passes, no network starts with 0
        "1234567812345670",  # Luhn passes, no network starts with 1
        "4111 1111 1111 11",  # 14 digits: Visa issues 13, 16 or 19
        "DNI 12345678A",  # wrong letter
        "NIE X1234567A",
        "CIF B12345674",  # a company's tax number is not a person's identity
        "telèfon 600 123 456 i 93 123 45 67, codi postal 08001",
        "factura 2024-000123, import 1.234,56 €",
        "Password:\n\n\n\nres",  # nothing after the word on its line, nor on the next 3 lines
        "Password:\nUsuari: pepe",  # the next line starts with a label, not the value
        "contrasenya: ********",  # already masked
        "passatge: res",  # not a password word
        "",
    ],
)
def test_leaves_look_alikes(text: str) -> None:
    assert found(text) == []


def test_kinds_filter_and_iban_shadows_cards() -> None:
    text = "IBAN ES91 2100 0418 4502 0005 1332 DNI 12345678Z clau: x"
    assert [k for k, _ in found(text, {IDENTITY})] == ["identity"]
    assert found(text, {CARD}) == []
    assert [k for k, _ in found(text, {IBAN, CARD, IDENTITY})] == ["iban", "identity"]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("IBAN ES91 2100 0418 4502 0005 1332.", "IBAN ES91 **** **** **** **** 1332."),
        ("IBAN ES9121000418450200051332", "IBAN ES91 **** **** **** **** 1332"),
        ("targeta 5555-5555-5555-4444", "targeta **** **** **** 4444"),
        ("DNI 12345678Z.", "DNI ****678Z."),
        ("NIE X1234567L", "NIE ****567L"),
        ("contrasenya: pepe 123\nsegueix", "contrasenya: ********\nsegueix"),
        ("res a amagar", "res a amagar"),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked


def test_scan_limit() -> None:
    far = "x" * SCAN_LIMIT + " DNI 12345678Z"
    assert find_sensitive(far) == []
    near = "x " * 1000 + "DNI 12345678Z"
    assert found(near) == [("identity", "12345678Z")]


# Generated text: valid values and look-alikes among words, digits and separators.
VALUES = [
    "ES91 2100 0418 4502 0005 1332",
    "ES9121000418450200051332",
    "DE89370400440532013000",
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "378282246310005",
    "12345678Z",
    "X1234567L",
    "12345678A",
    "ES91 2100 0418 4502 0005 1333",
    "password: abc",
    "clau wifi = x y",
    "contrasenya:",
]
PIECES = st.one_of(
    st.sampled_from(VALUES),
    st.text(alphabet="0123456789 -./:=\nXYZESabcñ*", max_size=40),
    st.text(max_size=20),
)
TEXTS = st.lists(PIECES, max_size=12).map(" ".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_properties(text: str) -> None:
    findings = find_sensitive(text)
    previous_end = 0
    for finding in findings:
        assert isinstance(finding, Finding)
        assert previous_end <= finding.start < finding.end <= len(text)
        previous_end = finding.end
    masked = mask_sensitive(text)
    # Masking removes every value found: nothing is found again in the masked text.
    assert find_sensitive(masked) == []
    assert [f for f in find_sensitive(text, {IBAN, CARD, IDENTITY}) if f.kind is CREDENTIAL] == []


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_never_raises_on_any_text(text: str) -> None:
    for finding in find_sensitive(text):
        assert 0 <= finding.start < finding.end <= len(text)
    mask_sensitive(text)


@pytest.mark.parametrize(
    "text",
    [
        "4 " * 5000,
        "ES12 " * 5000,
        "clau " * 5000 + ":",
        "1." * 5000,
        "X1234567" * 2000,
        "4111-" * 5000,
    ],
)
def test_adversarial_inputs_are_handled(text: str) -> None:
    # Only correctness here; the time on 1 MB inputs is measured in bench/bench_sensitive.py.
    for finding in find_sensitive(text):
        assert 0 <= finding.start < finding.end <= len(text)
