"""Unit tests for exobot.mail.parse with hand-built odd mails."""

from __future__ import annotations

import base64
import contextlib
import os
import random
import time
from datetime import UTC

import pytest

from exobot.mail.bounds import MAX_MULTIPARTS
from exobot.mail.parse import (
    Attachment,
    MailParseError,
    ParsedMail,
    header,
    normalize_message_id,
    parse_mail,
)


def mail(headers: str, body: bytes | str = b"hello\r\n") -> bytes:
    """Build raw mail bytes from a header block (LF line ends) and a body."""
    head = headers.strip("\n").replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n"
    return head + (body.encode("utf-8") if isinstance(body, str) else body)


def assert_single_line(parsed: ParsedMail) -> None:
    """No header value anywhere may carry CR or LF."""
    values = [parsed.subject, parsed.from_name, parsed.from_addr, *parsed.to, *parsed.cc]
    values += [v for vals in parsed.headers.values() for v in vals]
    values += [a.filename for a in parsed.attachments]
    for value in values:
        assert "\r" not in value and "\n" not in value, repr(value)


def nested_multipart(levels: int) -> bytes:
    """A mail whose text sits at the bottom of ``levels`` nested multiparts."""
    out = [b"From: a@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"]
    out.append(b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n')
    for i in range(1, levels):
        out.append(b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i))
    out.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nbottom text\r\n" % (levels - 1))
    out.extend(b"--b%d--\r\n" % i for i in range(levels - 1, -1, -1))
    return b"".join(out)


# ----------------------------------------------------------------------------- headers


def test_simple_mail_fields() -> None:
    raw = mail(
        """From: "Alice Example" <Alice@Example.ORG>
To: bob@example.org, "Carol" <CAROL@example.org>
Cc: dave@example.org
Reply-To: help@example.org
Subject: Hello
Date: Tue, 12 Mar 2024 10:00:00 +0100
Message-ID:   <abc@example.org>\t
In-Reply-To: <parent@example.org>
References: <root@example.org>
 <parent@example.org>"""
    )
    parsed = parse_mail(raw)
    assert parsed.from_addr == "alice@example.org"
    assert parsed.from_name == "Alice Example"
    assert parsed.to == ("bob@example.org", "carol@example.org")
    assert parsed.cc == ("dave@example.org",)
    assert parsed.reply_to == "help@example.org"
    assert parsed.message_id == "<abc@example.org>"
    assert parsed.in_reply_to == ("<parent@example.org>",)
    assert parsed.references == ("<root@example.org>", "<parent@example.org>")
    assert parsed.date is not None and parsed.date.utcoffset() is not None
    assert parsed.body == "hello\n"
    assert parsed.body_source == "plain"
    assert parsed.return_path is None
    assert header(parsed, "SUBJECT") == "Hello"
    assert header(parsed, "x-missing") is None
    assert_single_line(parsed)


def test_eight_bit_headers_do_not_crash() -> None:
    raw = (
        b"From: J\xc3\xb6rg M\xfcller <joerg@example.org>\r\n"
        b"Subject: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
        b"X-Latin: caf\xe9\r\n\r\nbody\r\n"
    )
    parsed = parse_mail(raw)
    assert parsed.subject == "Grüße aus Köln"  # valid UTF-8 is read as UTF-8
    assert parsed.from_addr == "joerg@example.org"
    assert "M" in parsed.from_name  # invalid UTF-8 falls back to cp1252
    assert header(parsed, "x-latin") == "café"
    assert_single_line(parsed)


def test_rfc2047_subject_and_from() -> None:
    raw = mail(
        """From: =?iso-8859-1?Q?J=F8rn_St=F8ylen?= <jorn@example.no>
Subject: =?UTF-8?B?w4lsw6hu?= =?UTF-8?Q?_et_Zo=C3=AB?=
To: =?utf-8?q?Doe=2C_John?= <john@example.org>"""
    )
    parsed = parse_mail(raw)
    assert parsed.subject == "Élèn et Zoë"
    assert parsed.from_name == "Jørn Støylen"
    assert parsed.to == ("john@example.org",)


def test_multibyte_character_split_across_encoded_words() -> None:
    # "é" is C3 A9 in UTF-8; some senders split it across two words.
    parsed = parse_mail(mail("Subject: =?utf-8?b?w6==?= =?utf-8?b?qQ==?=\nFrom: a@b.example"))
    assert parsed.subject == "é"


def test_crlf_injection_in_encoded_word_stays_on_one_line() -> None:
    raw = mail(
        """From: =?utf-8?q?Eve=0D=0ABcc:_victim@example.org?= <eve@example.org>
Subject: =?utf-8?q?a=0D=0ABcc:x?=
X-Other: =?utf-8?b?bGluZTEKbGluZTINCg==?="""
    )
    parsed = parse_mail(raw)
    assert parsed.subject == "a Bcc:x"
    assert parsed.from_addr == "eve@example.org"
    assert "bcc" not in parsed.headers
    assert_single_line(parsed)


def test_empty_subject_and_missing_message_id() -> None:
    parsed = parse_mail(mail("From: a@example.org\nSubject:"))
    assert parsed.subject == ""
    assert parsed.message_id is None
    assert parsed.in_reply_to == ()
    parsed = parse_mail(mail("From: a@example.org"))
    assert parsed.subject == ""


def test_null_return_path_means_empty_string() -> None:
    assert parse_mail(mail("Return-Path: <>\nFrom: a@example.org")).return_path == ""
    parsed = parse_mail(mail("Return-Path: <Bounce@Example.org>\nFrom: a@example.org"))
    assert parsed.return_path == "bounce@example.org"


def test_unparseable_from_and_bad_date() -> None:
    parsed = parse_mail(mail("From: MAILER-DAEMON\nDate: yesterday-ish"))
    assert parsed.from_addr == ""
    assert parsed.date is None


def test_unknown_zone_date_is_aware() -> None:
    parsed = parse_mail(mail("From: a@example.org\nDate: Tue, 12 Mar 2024 10:00:00 -0000"))
    assert parsed.date is not None and parsed.date.tzinfo == UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@example.org>", "<abc@example.org>"),
        ("  abc@example.org \r\n", "<abc@example.org>"),
        ("< abc@example.org >", "<abc@example.org>"),
        ("<abc@example.org> (comment)", "<abc@example.org>"),
        ("", None),
        ("   ", None),
        ("<>", None),
    ],
)
def test_normalize_message_id(value: str, expected: str | None) -> None:
    assert normalize_message_id(value) == expected


# -------------------------------------------------------------------------------- body


def test_lying_charset_us_ascii_but_latin1() -> None:
    raw = mail("From: a@example.org\nContent-Type: text/plain; charset=us-ascii", b"caf\xe9\r\n")
    assert parse_mail(raw).body == "café\n"


def test_lying_charset_utf8_but_latin1() -> None:
    raw = mail("From: a@example.org\nContent-Type: text/plain; charset=utf-8", b"na\xefve\r\n")
    assert parse_mail(raw).body == "naïve\n"


def test_latin1_label_on_utf8_text() -> None:
    raw = mail(
        "From: a@example.org\nContent-Type: text/plain; charset=iso-8859-1",
        "Grüße\r\n".encode(),
    )
    assert parse_mail(raw).body == "Grüße\n"


@pytest.mark.parametrize("charset", ["x-unknown", "base64", '"utf-8*en"', "\x01bad"])
def test_unknown_or_odd_charset(charset: str) -> None:
    raw = mail(f"From: a@example.org\nContent-Type: text/plain; charset={charset}", b"d\xe9j\xe0\n")
    body = parse_mail(raw).body
    assert body.startswith("d") and body.endswith("\n")


def test_html_only_mail_drops_script_and_style() -> None:
    html = (
        "<html><head><style>p {color: red}</style>"
        "<script>var secret = 'SCRIPTCODE';</script></head>"
        "<body><p>Hello <b>member</b>,</p><p>see <a href='https://exo.example/x'>here</a></p>"
        "<script>alert('SCRIPTCODE')</script></body></html>"
    )
    raw = mail("From: a@example.org\nContent-Type: text/html; charset=utf-8", html)
    parsed = parse_mail(raw)
    assert parsed.body_source == "html"
    assert "Hello" in parsed.body and "member" in parsed.body
    assert "SCRIPTCODE" not in parsed.body
    assert "color: red" not in parsed.body
    assert "<p>" not in parsed.body


def test_alternative_prefers_plain() -> None:
    body = (
        "--A\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n"
        "--A\r\nContent-Type: text/plain\r\n\r\nplain version\r\n--A--\r\n"
    )
    raw = mail("From: a@example.org\nContent-Type: multipart/alternative; boundary=A", body)
    parsed = parse_mail(raw)
    assert parsed.body == "plain version"
    assert parsed.attachments == ()


def test_blank_plain_alternative_falls_back_to_html() -> None:
    body = (
        "--A\r\nContent-Type: text/plain\r\n\r\n \r\n"
        "--A\r\nContent-Type: text/html\r\n\r\n<p>real text</p>\r\n--A--\r\n"
    )
    raw = mail("From: a@example.org\nContent-Type: multipart/alternative; boundary=A", body)
    parsed = parse_mail(raw)
    assert parsed.body_source == "html"
    assert parsed.body.strip() == "real text"


def test_newlines_are_normalized() -> None:
    parsed = parse_mail(mail("From: a@example.org", b"one\r\ntwo\rthree\n"))
    assert parsed.body == "one\ntwo\nthree\n"


def test_no_text_at_all() -> None:
    raw = mail(
        "From: a@example.org\nContent-Type: image/png\nContent-Transfer-Encoding: base64",
        base64.b64encode(b"\x89PNG"),
    )
    parsed = parse_mail(raw)
    assert parsed.body == "" and parsed.body_source == "none"
    assert parsed.attachments[0].filename == "attachment-1.png"  # extension from the type
    assert parsed.attachments[0].data == b"\x89PNG"


@pytest.mark.parametrize("levels", [50, 200, 1000, 5000])
def test_deeply_nested_multipart_does_not_crash(levels: int) -> None:
    parsed = parse_mail(nested_multipart(levels))
    assert parsed.subject == "deep"
    if levels <= MAX_MULTIPARTS:
        assert parsed.body == "bottom text"
    else:  # beyond the bound on nesting: cut before parsing, flagged
        assert "NestingTooDeep" in parsed.defects and parsed.body_truncated


# ------------------------------------------------------------------------- attachments


def test_attachments_are_decoded_and_names_sanitized() -> None:
    pdf = b"%PDF-1.4 fake"
    body = (
        "--M\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        '--M\r\nContent-Type: application/PDF; name="x.pdf"\r\n'
        'Content-Disposition: attachment; filename="../../etc/pass\x01wd.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(pdf).decode() + "\r\n"
        "--M\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"JPEG").decode()
        + "\r\n--M\r\nContent-Type: text/plain\r\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\r\n\r\nCV\r\n"
        '--M\r\nContent-Type: application/octet-stream; name="=?utf-8?q?caf=C3=A9.bin?="\r\n'
        "\r\nraw\r\n"
        "--M\r\nContent-Type: text/plain\r\n\r\ninline footer, not an attachment\r\n--M--\r\n"
    )
    raw = mail("From: a@example.org\nContent-Type: multipart/mixed; boundary=M", body)
    parsed = parse_mail(raw)
    # Every unnamed inline text part of a mixed multipart is body text, in order.
    assert parsed.body == "see attached\n\ninline footer, not an attachment"
    assert [a.filename for a in parsed.attachments] == [
        "pass wd.pdf",
        "attachment-2.jpg",
        "résumé.txt",
        "café.bin",
    ]
    assert parsed.attachments[0] == Attachment("pass wd.pdf", "application/pdf", pdf)
    assert parsed.attachments[1].content_type == "image/jpeg"
    assert parsed.attachments[1].data == b"JPEG"
    assert_single_line(parsed)


def test_forwarded_message_becomes_eml_attachment() -> None:
    inner = "From: x@example.org\r\nSubject: Original / question\r\n\r\ninner text\r\n"
    body = (
        "--F\r\nContent-Type: text/plain\r\n\r\nFYI\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "--F--\r\n"
    )
    raw = mail("From: a@example.org\nContent-Type: multipart/mixed; boundary=F", body)
    parsed = parse_mail(raw)
    assert parsed.body == "FYI"
    (attachment,) = parsed.attachments
    assert attachment.filename == "question.eml"  # path separators removed
    assert attachment.content_type == "message/rfc822"
    assert b"inner text" in attachment.data


def test_forward_only_mail_uses_the_forwarded_text() -> None:
    inner = "From: x@example.org\r\nSubject: Q\r\n\r\ninner text\r\n"
    raw = mail("From: a@example.org\nContent-Type: message/rfc822", inner)
    parsed = parse_mail(raw)
    assert parsed.body == "inner text\n"
    assert parsed.attachments[0].filename == "Q.eml"


def test_twenty_megabyte_attachment() -> None:
    data = os.urandom(20 * 1024 * 1024)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    body = (
        b"--B\r\nContent-Type: text/plain\r\n\r\nbig file attached\r\n"
        b"--B\r\nContent-Type: application/zip\r\n"
        b'Content-Disposition: attachment; filename="big.zip"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--B--\r\n"
    )
    raw = mail("From: a@example.org\nContent-Type: multipart/mixed; boundary=B", body)
    started = time.perf_counter()
    parsed = parse_mail(raw)
    elapsed = time.perf_counter() - started
    print(f"20 MB attachment parsed in {elapsed:.2f} s")
    assert parsed.body == "big file attached"
    assert parsed.attachments[0].data == data
    assert elapsed < 30  # generous: about 1 s on the dev machine


# ------------------------------------------------------------------------------ bounces


DSN_FIELDS = (
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: rfc822; Gone@Example.net\r\n"
    "Original-Recipient: rfc822;gone@example.net\r\n"
    "Action: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>:\r\n"
    "    Recipient address rejected\r\n"
)


def dsn(original_part: str) -> bytes:
    """A delivery-status report whose third part is ``original_part``."""
    body = (
        "--R\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\n" + DSN_FIELDS + "\r\n"
        "--R\r\n" + original_part + "--R--\r\n"
    )
    return mail(
        "From: MAILER-DAEMON@mx.example.net\nReturn-Path: <>\nSubject: Undelivered\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=R",
        body,
    )


ORIGINAL = (
    "From: helpdesk@exo.example\r\nMessage-ID: <ticket-42@exo.example>\r\nSubject: Re\r\n\r\n"
)


@pytest.mark.parametrize(
    "part",
    [
        "Content-Type: message/rfc822\r\n\r\n" + ORIGINAL + "original body\r\n",
        "Content-Type: text/rfc822-headers\r\n\r\n" + ORIGINAL,
    ],
    ids=["message-rfc822", "text-rfc822-headers"],
)
def test_delivery_status_bounce(part: str) -> None:
    parsed = parse_mail(dsn(part))
    assert parsed.is_report
    assert parsed.return_path == ""
    assert parsed.body == "Your message could not be delivered."
    assert parsed.attachments == ()  # report machinery is not attached files
    bounce = parsed.bounce
    assert bounce is not None
    assert bounce.original_message_id == "<ticket-42@exo.example>"
    assert bounce.recipients == ("gone@example.net",)
    assert bounce.status == "5.1.1"
    assert bounce.action == "failed"
    assert bounce.diagnostic == "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected"


def test_non_dsn_report_has_no_bounce() -> None:
    body = (
        "--R\r\nContent-Type: text/plain\r\n\r\nRead receipt\r\n"
        "--R\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Final-Recipient: rfc822; a@example.org\r\nDisposition: manual-action/MDN-sent-manually;"
        " displayed\r\n\r\n--R--\r\n"
    )
    raw = mail(
        "From: a@example.org\n"
        "Content-Type: multipart/report; report-type=disposition-notification; boundary=R",
        body,
    )
    parsed = parse_mail(raw)
    assert parsed.is_report and parsed.bounce is None


# ------------------------------------------------------------------------------ garbage


@pytest.mark.parametrize("raw", [b"", b"\r\n\r\n", b"just some text without headers\n"])
def test_not_a_mail(raw: bytes) -> None:
    with pytest.raises(MailParseError):
        parse_mail(raw)


def test_random_bytes_never_raise_anything_else() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        raw = rng.randbytes(rng.randrange(0, 2000))
        try:
            parsed = parse_mail(raw)
        except MailParseError:
            continue
        assert_single_line(parsed)


def test_mutated_mails_never_raise_anything_else() -> None:
    rng = random.Random(99)
    seed = dsn("Content-Type: message/rfc822\r\n\r\n" + ORIGINAL + "x\r\n")
    for _ in range(300):
        raw = bytearray(seed)
        for _ in range(rng.randrange(1, 30)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        with contextlib.suppress(MailParseError):
            parse_mail(bytes(raw[: rng.randrange(len(raw) + 1)]))


def test_bom_and_leading_blank_lines_are_tolerated() -> None:
    parsed = parse_mail(b"\xef\xbb\xbf\r\n" + mail("From: a@example.org\nSubject: hi"))
    assert parsed.subject == "hi"
