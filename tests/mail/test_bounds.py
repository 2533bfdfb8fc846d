"""Bounds on MIME structure before parsing: part bombs and deep nesting are cut, real mail is
left alone."""

from __future__ import annotations

from exobot.mail.bounds import MAX_BOUNDARY_LINES, MAX_MULTIPARTS, bound_structure
from exobot.mail.parse import parse_mail

HEAD = b"From: a@example.net\r\nTo: suport@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def many_parts(n: int, boundary: bytes = b"p") -> bytes:
    parts = b"".join(
        b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(n)
    )
    return (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="'
        + boundary
        + b'"\r\n\r\n'
        + parts
        + b"--"
        + boundary
        + b"--\r\n"
    )


def deep(levels: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\nMolt endins"
    for depth in range(levels):
        b = b"b%d" % depth
        body = (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
            + body + b"\r\n--" + b + b"--"
        )  # fmt: skip
    return HEAD + body


def test_real_mail_is_left_alone() -> None:
    raw = many_parts(30, b"----=_Part_1_2.3")
    assert bound_structure(raw) == (raw, None)
    nested = deep(5)
    assert bound_structure(nested) == (nested, None)
    parsed = parse_mail(nested)
    assert parsed.body == "Molt endins" and not parsed.body_truncated


def test_a_part_bomb_is_cut_after_the_bound() -> None:
    raw = many_parts(10_000)
    data, defect = bound_structure(raw)
    assert defect == "TooManyParts"
    assert data.count(b"\r\n--p\r\n") == MAX_BOUNDARY_LINES
    parsed = parse_mail(raw)
    assert parsed.body_truncated and "TooManyParts" in parsed.defects
    assert parsed.body.startswith("x")


def test_deep_nesting_is_cut_before_the_parser_recurses() -> None:
    raw = deep(500)
    data, defect = bound_structure(raw)
    assert defect == "NestingTooDeep"
    assert data.lower().count(b"multipart/") == MAX_MULTIPARTS
    parsed = parse_mail(raw)
    assert parsed.body_truncated and "NestingTooDeep" in parsed.defects
    assert parsed.subject == "s" and parsed.from_addr == "a@example.net"


def test_dashed_rules_in_a_text_are_no_part_bomb() -> None:
    text = b"\r\n".join(b"-" * 40 for _ in range(2_000))  # under the body's own cap
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\n'
    raw += b"Content-Type: text/plain\r\n\r\n" + text + b"\r\n--zz--\r\n"
    assert bound_structure(raw) == (raw, None)
    assert not parse_mail(raw).body_truncated


def test_the_closing_boundary_counts_too() -> None:
    raw = many_parts(MAX_BOUNDARY_LINES - 1)  # 999 openings and one closing line
    assert bound_structure(raw) == (raw, None)
    assert bound_structure(many_parts(MAX_BOUNDARY_LINES))[1] == "TooManyParts"
