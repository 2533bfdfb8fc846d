"""Property-based fuzzing of the parser (hypothesis): random MIME trees, header values,
charsets, transfer encodings and HTML. Whatever the input, parse_mail returns a ParsedMail
with single-line headers and a body within its cap, or raises MailParseError; nothing else."""

from __future__ import annotations

import base64
import quopri

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exobot.mail.parse import MAX_BODY_CHARS, MailParseError, ParsedMail, parse_mail

CHARSETS = ["utf-8", "iso-8859-1", "us-ascii", "gb2312", "shift_jis", "iso-2022-jp", "x-bogus", ""]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "bogus"]
TAGS = [
    "ul",
    "li",
    "ol",
    "pre",
    "blockquote",
    "table",
    "td",
    "a href='x",
    "p",
    "!--",
    "script",
    "b",
]
SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

header_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60
) | st.sampled_from(
    [
        "=?utf-8?q?Hola m=C3=B3n?=",
        "=?utf-8?b?w6==?=",
        "=?iso-2022-jp?B?GyRCLSEbKEI=?=",
        "Name addr@example.org",
        "<>",
        "=?x?q?" + "a" * 200,
    ]
)


@st.composite
def html(draw) -> str:
    pieces = draw(st.lists(st.sampled_from(TAGS) | st.text(max_size=20), max_size=40))
    closing = draw(st.booleans())
    out = []
    for piece in pieces:
        if piece in TAGS:
            out.append(f"<{piece}>" if closing else f"<{piece}")
        else:
            out.append(piece)
    return "".join(out) + "\n" * draw(st.integers(0, 50)) + " " * draw(st.integers(0, 300))


def encode(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(data)
    if encoding == "quoted-printable":
        return quopri.encodestring(data)
    return data


@st.composite
def leaf(draw) -> bytes:
    ctype = draw(st.sampled_from(["text/plain", "text/html", "image/png", "message/rfc822"]))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    text = draw(html()) if ctype == "text/html" else draw(st.text(max_size=200))
    data = (
        text.encode("utf-8", errors="replace")
        if draw(st.booleans())
        else draw(st.binary(max_size=200))
    )
    disposition = draw(
        st.sampled_from(["", "inline", "attachment", 'attachment; filename="f\xe9.txt"'])
    )
    head = f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n"
    if disposition:
        head += f"Content-Disposition: {disposition}\r\n"
    return head.encode("utf-8") + b"\r\n" + encode(data, encoding)


def tree(depth: int):
    if depth == 0:
        return leaf()
    return st.one_of(leaf(), multipart(depth))


@st.composite
def multipart(draw, depth: int) -> bytes:
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report", "signed"]))
    boundary = draw(st.sampled_from(["b1", "=_l\xedmit", "x" * 70, "a b"]))
    children = draw(st.lists(tree(depth - 1), max_size=4))
    out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\npreamble\r\n'.encode()
    for child in children:
        out += f"--{boundary}\r\n".encode() + child + b"\r\n"
    if draw(st.booleans()):
        out += f"--{boundary}--\r\n".encode()
    return out


@st.composite
def mails(draw) -> bytes:
    headers = b""
    for name in draw(
        st.lists(st.sampled_from(["From", "To", "Cc", "Subject", "Reply-To"]), max_size=6)
    ):
        value = draw(header_text)
        raw = value.encode(draw(st.sampled_from(["utf-8", "gb18030", "latin-1"])), errors="replace")
        headers += name.encode() + b": " + raw + b"\r\n"
        if draw(st.booleans()):
            headers += b"continued without indentation\r\n"
    banner = b"---- Original email message ----\r\n" if draw(st.booleans()) else b""
    return banner + headers + b"MIME-Version: 1.0\r\n" + draw(tree(3))


def check(parsed: ParsedMail) -> None:
    assert len(parsed.body) <= MAX_BODY_CHARS
    values = [parsed.subject, parsed.from_addr, parsed.from_name, *parsed.to, *parsed.cc]
    values += [v for vals in parsed.headers.values() for v in vals]
    values += [a.filename for a in parsed.attachments]
    assert all("\r" not in v and "\n" not in v for v in values)
    assert "\x00" not in parsed.body


@SETTINGS
@given(mails())
def test_generated_mails_parse_or_are_refused(raw: bytes) -> None:
    try:
        parsed = parse_mail(raw)
    except MailParseError:
        return
    check(parsed)


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes_parse_or_are_refused(raw: bytes) -> None:
    try:
        parsed = parse_mail(raw)
    except MailParseError:
        return
    check(parsed)


@pytest.mark.parametrize("raw", [b"From ", b"From x\n", b"From x\nnot a header\n\nbody"])
def test_an_mbox_from_line_without_headers_parses_or_is_refused(raw: bytes) -> None:
    """Found by the fuzz above: an mbox "From " line followed by no header at all made the
    header repair raise ValueError (max() of nothing) instead of parsing or refusing."""
    try:
        parsed = parse_mail(raw)
    except MailParseError:
        return
    check(parsed)
