"""core.sensitive on the shapes values take when pasted from a bank's page or a PDF, or wrapped
in a reply: Unicode spaces, full-width digits, dots and double spaces between groups, a number
wrapped across two lines (quoted too), a password on the line after its word. Each is found at
its span in the original text, which masking replaces and keeps around; and look-alikes the
loosened separators could have joined (columns of numbers, dotted references) are not cards."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exobot.core.sensitive import (
    DECIMALS_END,
    INVISIBLE_PLANES,
    _normalizing_table,
    find_sensitive,
    mask_and_kinds,
    mask_sensitive,
)

IBAN_MASK = "ES91 **** **** **** **** 1332"
CARD_MASK = "**** **** **** 1111"


def found(text: str) -> list[tuple[str, str]]:
    """(kind, original text at the span) of each finding."""
    return [(f.kind.value, text[f.start : f.end]) for f in find_sensitive(text)]


def iban(separator: str) -> str:
    return separator.join(["ES91", "2100", "0418", "4502", "0005", "1332"])


# Spaces that are no line break, as pasted from web pages and PDFs.
UNICODE_SPACES = ["\u00a0", "\u2007", "\u202f", "\u2009", "\u2002", "\u3000", "\t"]


@pytest.mark.parametrize("space", UNICODE_SPACES, ids=[f"U+{ord(c):04X}" for c in UNICODE_SPACES])
def test_unicode_spaces_between_groups(space: str) -> None:
    value = iban(space)
    text = f"El\u00a0meu IBAN:\u00a0{value}\u00a0, gràcies"
    assert found(text) == [("iban", value)]
    assert mask_sensitive(text) == f"El\u00a0meu IBAN:\u00a0{IBAN_MASK}\u00a0, gràcies"
    card = space.join(["4111", "1111", "1111", "1111"])
    assert mask_sensitive(f"targeta{space}{card}{space}ok") == f"targeta{space}{CARD_MASK}{space}ok"
    dni = f"12345678{space}Z"
    assert found(f"DNI{space}{dni}.") == [("identity", dni)]
    assert mask_sensitive(f"DNI{space}{dni}.") == f"DNI{space}****678Z."


@pytest.mark.parametrize(
    ("value", "kind", "masked"),
    [
        (iban("  "), "iban", IBAN_MASK),
        (iban("."), "iban", IBAN_MASK),
        (iban(" - "), "iban", IBAN_MASK),
        ("4111.1111.1111.1111", "card", CARD_MASK),
        ("4111  1111  1111  1111", "card", CARD_MASK),
        ("3782.822463.10005", "card", "**** **** **** 0005"),  # Amex 4-6-5
    ],
)
def test_dots_and_double_separators(value: str, kind: str, masked: str) -> None:
    text = f"dades: {value}. Gràcies"
    assert found(text) == [(kind, value)]
    assert mask_sensitive(text) == f"dades: {masked}. Gràcies"


@pytest.mark.parametrize(
    ("text", "value", "masked"),
    [
        # Wrapped by the mail client, with the space left before the break (format=flowed) too.
        ("IBAN ES91 2100 0418\n4502 0005 1332\nGràcies", "ES91 2100 0418\n4502 0005 1332", f"IBAN {IBAN_MASK}\nGràcies"),
        ("IBAN ES91 2100 0418 \r\n4502 0005 1332.", "ES91 2100 0418 \r\n4502 0005 1332", f"IBAN {IBAN_MASK}."),
        # Wrapped in a quoted reply, quoted twice too.
        ("> el compte ES91 2100 0418\n> 4502 0005 1332\n> res més", "ES91 2100 0418\n> 4502 0005 1332", f"> el compte {IBAN_MASK}\n> res més"),
        ("> > ES91 2100 0418\n> > 4502 0005 1332", "ES91 2100 0418\n> > 4502 0005 1332", f"> > {IBAN_MASK}"),
        ("targeta 4111 1111\n1111 1111 caduca", "4111 1111\n1111 1111", f"targeta {CARD_MASK} caduca"),
        (">targeta 4111 1111 1111\n>1111", "4111 1111 1111\n>1111", f">targeta {CARD_MASK}"),
    ],
)
def test_a_number_wrapped_across_two_lines(text: str, value: str, masked: str) -> None:
    assert [v for _k, v in found(text)] == [value]
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize(
    ("text", "value", "masked"),
    [
        ("IBAN ＥＳ９１ ２１００ ０４１８ ４５０２ ０００５ １３３２！", "ＥＳ９１ ２１００ ０４１８ ４５０２ ０００５ １３３２", f"IBAN {IBAN_MASK}！"),
        ("IBAN ＥＳ９１２１０００４１８４５０２０００５１３３２", "ＥＳ９１２１０００４１８４５０２０００５１３３２", f"IBAN {IBAN_MASK}"),
        ("targeta ４１１１ １１１１ １１１１ １１１１", "４１１１ １１１１ １１１１ １１１１", f"targeta {CARD_MASK}"),
        ("DNI ١٢٣٤٥٦٧٨Z", "١٢٣٤٥٦٧٨Z", "DNI ****678Z"),  # Arabic-Indic digits
    ],
)
def test_full_width_and_other_decimal_digits(text: str, value: str, masked: str) -> None:
    assert [v for _k, v in found(text)] == [value]
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password:\nhunter2", "password:\n********"),
        ("Contrasenya:\r\n  hunter2 \r\nGràcies", "Contrasenya:\r\n  ******** \r\nGràcies"),
        ("la clau wifi =\n\nAbc-123 (amb majúscula)", "la clau wifi =\n\n******** (amb majúscula)"),
        ("> Contraseña:\n> hunter2\n> Saludos", "> Contraseña:\n> ********\n> Saludos"),
        ("password： hunter2", "password： ********"),  # full-width colon
        # The word after is a label: its own value is the secret, found once.
        ("Contrasenya:\nclau: s3cret", "Contrasenya:\nclau: ********"),
        # The next line's word holds a password word and its value: all of it is masked.
        ("clau:\npass=abc def\nfi", "clau:\n********\nfi"),
    ],
)
def test_password_on_the_next_line(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked
    assert mask_and_kinds(text) == (masked, ("credential",))


@pytest.mark.parametrize(
    "text",
    [
        "Password:\n\n\n\nres",  # more than two blank lines after the word
        "Password:\nUsuari: pepe",  # a label on the next line, with no password word
        "contrasenya:\n> \n> ********",  # already masked
        "Password:   \n   ",
    ],
)
def test_password_word_without_a_value_after_it(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "telèfon 93.123.45.67 o 600.123.456, cp 08.001",
        "import 1.234.567,89 €, factura 2024.000.123, IP 192.168.100.200",
        "versió 4.1.11.1111.1111",
        # Luhn-valid with a card network's prefix, but not grouped as cards are printed:
        "factura 411.111.111.111.1111",  # a dotted reference
        "Ref 51135772\n88554884",  # a reference of two halves on two lines
        "tel. 650 482 933\n8377 9848",  # a phone number and the next line's number
        # A column of numbers (quoted too), grouped like a card but over three line breaks.
        "Imports:\n4282\n1153\n4427\n7451\n",
        "> 4282\n> 1153\n> 4427\n> 7451",
        # An IBAN look-alike failing its checksum stays one when wrapped or dotted.
        "ES91.2100.0418.4502.0005.1333",
        "ES91 2100 0418\n> 4502 0005 1333",
    ],
)
def test_look_alikes_the_loosened_separators_do_not_join(text: str) -> None:
    assert found(text) == []
    assert mask_sensitive(text) == text


# Each variant of the ASCII text has the same findings at the same spans.
ASCII_TEXTS = [
    "IBAN ES91 2100 0418 4502 0005 1332 i la targeta 4111 1111 1111 1111, DNI 12345678 Z",
    "compte ES91 2100 0418 4502 0005 1333 i 4111 1111 1111 1112, telèfon 600 123 456",
]
SPACE_FOR = st.sampled_from([" ", *UNICODE_SPACES])
DIGIT_FOR = st.sampled_from(["", "０", "٠", "०"])  # ASCII, full-width, Arabic-Indic, Devanagari


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ASCII_TEXTS), st.data())
def test_variants_are_found_at_the_same_spans(text: str, data: st.DataObject) -> None:
    variant = []
    for char in text:
        if char == " ":
            variant.append(data.draw(SPACE_FOR))
        elif char.isdigit():
            zero = data.draw(DIGIT_FOR)
            variant.append(chr(ord(zero) + int(char)) if zero else char)
        else:
            variant.append(char)
    other = "".join(variant)
    assert len(other) == len(text)
    assert find_sensitive(other) == find_sensitive(text)
    # Outside the findings, the variant's own characters are kept.
    masked, pos = mask_sensitive(other), 0
    for finding in find_sensitive(other):
        assert other[pos : finding.start] in masked
        pos = finding.end
    assert masked.endswith(other[pos:])


@pytest.mark.parametrize(
    "text",
    [
        "4111.\n> " * 5000,
        "4111  " * 5000,
        "ES12\n> " * 5000,
        "ES12.." * 5000,
        "clau:\n" * 5000,
        "clau:\n> \n> clau=" * 2000,
        "1.\n" * 5000,
        "\u00a0４" * 5000,
        "4\u200b" * 50000,
        "ES91\u00ad" * 20000,
    ],
)
def test_adversarial_inputs_with_the_new_separators(text: str) -> None:
    for finding in find_sensitive(text):
        assert 0 <= finding.start < finding.end <= len(text)
    assert len(mask_sensitive(text)) > 0


def test_every_decimal_digit_is_below_the_scanned_bound() -> None:
    """The normalizing table scans code points up to DECIMALS_END only: a digit above it (a
    newer Unicode in a newer Python) would go unread, so this fails until the bound moves."""
    above = [c for c in range(DECIMALS_END, sys.maxunicode + 1) if chr(c).isdecimal()]
    assert above == []
    digits = [c for c in range(128, DECIMALS_END) if chr(c).isdecimal()]
    table = _normalizing_table()
    assert len(digits) >= 650  # Unicode 14: 65 blocks of ten
    assert all(table[c] == ord("0") + unicodedata.decimal(chr(c)) for c in digits)


# Characters nobody sees, typed or pasted between a value's digits to slip it past the check.
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u180e", "\u200e",
             "\u202e", "\u0301", "\U000e0041"]  # fmt: skip


@pytest.mark.parametrize("char", INVISIBLE)
def test_invisible_characters_hide_no_value(char: str) -> None:
    values = [
        ("iban", char.join(["ES91", "2100", "0418", "4502", "0005", "1332"]), IBAN_MASK),
        ("identity", f"1234{char}5678{char}Z", "****678Z"),
        ("card", char.join(["4111", "1111", "1111", "1111"]), CARD_MASK),
        ("iban", "ES" + char.join("9121000418450200051332"), IBAN_MASK),
    ]
    for kind, value, mask in values:
        # Around the value too: they stay outside its span, as the words around it do.
        text = f"el compte {char}{value}{char}, gràcies"
        assert found(text) == [(kind, value)], (char, value)
        assert mask_sensitive(text) == f"el compte {char}{mask}{char}, gràcies"
    hidden = f"contra{char}senya: Ll{char}ob4t"
    assert mask_sensitive(hidden) == f"contra{char}senya: ********"


def test_every_invisible_character_is_in_the_scanned_planes() -> None:
    """Invisible characters are looked for in INVISIBLE_PLANES only: one elsewhere (a newer
    Unicode in a newer Python) could hide a value, so this fails until the planes grow."""
    scanned = {c for low, high in INVISIBLE_PLANES for c in range(low, high)}
    invisible = [
        c
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cf", "Mn", "Me") and c not in scanned
    ]
    assert invisible == []
