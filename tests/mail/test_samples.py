"""Odd real-world mail shapes (tests/mail/samples, written for this project): the exact
subject, sender, body and attachments expected from each."""

from __future__ import annotations

import binascii
from pathlib import Path

import pytest

from exobot.mail.parse import ParsedMail, parse_mail

SAMPLES = Path(__file__).parent / "samples"
LOG = b"ping 10.0.0.1: 4 packets transmitted, 0 received\n" * 3
PDF = b"%PDF-1.4 prova"


def parsed(name: str) -> ParsedMail:
    return parse_mail((SAMPLES / name).read_bytes())


def files(mail: ParsedMail) -> list[tuple[str, str, bytes]]:
    return [(a.filename, a.content_type, a.data) for a in mail.attachments]


@pytest.mark.parametrize(
    ("name", "subject", "sender", "sender_name", "body"),
    [
        (
            "unindented_continuation.eml",
            "La connexió cau cada tarda i també algun matí",
            "marta@example.net",
            "Marta Puig",
            "Bon dia, la connexió cau cada tarda cap a les set.\n",
        ),
        (
            "leading_banner.eml",
            "Reenviat: el router parpelleja",
            "jordi@example.net",
            "Jordi Serra",
            "El llum del router parpelleja en taronja.\n",
        ),
        (
            "encoded_word_spaces.eml",
            "Hola món, no tinc connexió",
            "nuria@example.net",
            "Núria Vidal",
            "Text.\n",
        ),
        (
            "encoded_word_folded.eml",
            "Problema amb la connexió òptica",
            "ferran@example.net",
            "Ferran Guàrdia",
            "Text.\n",
        ),
        (
            "raw_gb2312.eml",
            "网络连接中断，请帮忙检查线路",
            "user@example.net",
            "王小明",
            "今天早上开始无法上网。\n",
        ),
        (
            "raw_shift_jis.eml",
            "インターネットに接続できません",
            "user@example.net",
            "山田太郎",
            "昨日から接続できません。\n",
        ),
        (
            "raw_big5.eml",
            "網路連線中斷，請幫忙檢查線路",
            "user@example.net",
            "陳大文",
            "今天早上開始無法上網。\n",
        ),
        ("iso2022jp_extended.eml", "①② test", "taro@example.jp", "Taro", "接続できません ①② ｶ\n"),
        (
            "from_without_brackets.eml",
            "Sense claudàtors",
            "laia@example.net",
            "Laia Roca",
            "Text.\n",
        ),
        ("two_from_headers.eml", "Dos From", "oriol@example.net", "Oriol Mas", "Text.\n"),
    ],
)
def test_headers_and_text(
    name: str, subject: str, sender: str, sender_name: str, body: str
) -> None:
    mail = parsed(name)
    assert (mail.subject, mail.from_addr, mail.from_name, mail.body) == (
        subject,
        sender,
        sender_name,
        body,
    )
    assert mail.attachments == ()


def test_raw_utf8_attachment_name() -> None:
    mail = parsed("raw_utf8_filename.eml")
    assert mail.body == "Adjunto la factura."
    assert files(mail) == [("factura_març.pdf", "application/pdf", PDF)]


def test_every_text_part_of_a_mixed_mail_in_order() -> None:
    # Apple Mail: text, picture, text, pdf, text, and an extra unnamed HTML part.
    mail = parsed("apple_mail_split_text.eml")
    assert mail.body == (
        "Aquesta es la part del davant:\n\ni aquesta la del darrere:\n\nGracies!\n\n"
        "Enviat des del **mòbil**"
    )
    assert files(mail) == [
        ("davant.png", "image/png", b"\x89PNG\r\n\x1a\nfake"),
        ("contracte.pdf", "application/pdf", PDF),
    ]


def test_uuencoded_block_in_the_text_becomes_a_file() -> None:
    mail = parsed("uuencoded_in_body.eml")
    assert mail.body == "Us envio el registre:\n\nSalutacions\n"
    assert files(mail) == [("registre.txt", "text/plain", LOG)]


def test_uuencoded_part_without_begin_line() -> None:
    mail = parsed("uuencoded_part_no_begin.eml")
    assert mail.body == "Adjunt el registre."
    assert files(mail) == [("registre.txt", "application/octet-stream", LOG)]


def test_text_that_only_looks_like_uuencode_stays_text() -> None:
    raw = b"From: a@example.org\r\n\r\nbegin 644 notes.txt\r\nthis is not data\r\nend\r\n"
    mail = parse_mail(raw)
    assert mail.body == "begin 644 notes.txt\nthis is not data\nend\n"
    assert mail.attachments == ()
    assert binascii.b2a_uu(b"x")  # the encoder used by the samples exists here


def test_nameless_inline_image_gets_an_extension() -> None:
    mail = parsed("nameless_inline_image.eml")
    assert mail.body == "Mireu la captura:"
    assert files(mail) == [("attachment-1.jpg", "image/jpeg", b"\xff\xd8\xff\xe0JFIF")]


def test_plain_stub_gives_way_to_the_html_alternative() -> None:
    mail = parsed("plain_stub.eml")
    assert mail.body_source == "html"
    assert mail.body.startswith("Paràgraf 0: la cobertura del barri millorarà")
    assert "Paràgraf 11" in mail.body and "versió HTML" not in mail.body


def test_a_short_real_plain_alternative_is_kept() -> None:
    raw = (
        b"From: a@example.org\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n"
        b"--A\r\nContent-Type: text/plain\r\n\r\nNo tinc internet.\r\n"
        b"--A\r\nContent-Type: text/html\r\n\r\n<p>No tinc <b>internet</b>.</p>\r\n--A--\r\n"
    )
    mail = parse_mail(raw)
    assert (mail.body, mail.body_source) == ("No tinc internet.", "plain")


def test_boundary_with_a_non_ascii_character() -> None:
    mail = parsed("non_ascii_boundary.eml")
    assert (mail.subject, mail.body) == ("Límit", "El text de dins.")
    assert files(mail) == [("nota.txt", "text/plain", b"nota")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("josé@example.org", ""),  # not writable without SMTPUTF8: refused at intake
        ("a@exa_mple.org", ""),
        ("a@b", ""),
        ("a@b..org", ""),
        ("Marta <Marta@Example.NET>", "marta@example.net"),
    ],
)
def test_the_one_address_rule_decides_the_sender(value: str, expected: str) -> None:
    mail = parse_mail(f"From: {value}\r\nCc: {value}, bo@example.org\r\n\r\nx".encode())
    assert mail.from_addr == expected
    assert mail.cc == ((expected,) if expected else ()) + ("bo@example.org",)


def test_a_sender_is_recovered_from_a_trailing_dot_but_a_cc_is_not() -> None:
    mail = parse_mail(b"From: joan@example.org.\r\nCc: pere@example.org.\r\n\r\nx")
    assert (mail.from_addr, mail.cc) == ("joan@example.org", ())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"Pere" <pere joan@example.net>', ("", "")),
        ("Pere <pere@example.net.>", ("Pere", "pere@example.net")),
        ("<josé@example.org>", ("", "")),
    ],
)
def test_an_address_in_angle_brackets_is_taken_whole_or_not_at_all(
    value: str, expected: tuple[str, str]
) -> None:
    # "Name" <a b c@example.net>: the bracketed address is not usable, and its tail
    # "c@example.net" is somebody else's, so the mail has no sender (the processor then
    # quarantines it, saying the sender address cannot be written to).
    mail = parse_mail(f"From: {value}\r\n\r\nx".encode())
    assert (mail.from_name, mail.from_addr) == expected
