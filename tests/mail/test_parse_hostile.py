"""Hostile mail the parser must handle in linear time and bounded output: every case here
was super-linear before (html2text's list indentation, the trailing-space regex, the stdlib
HTML tokenizer rescanning unclosed tags, html2text's Markdown escaping rescanning runs of
newlines). The checks are on the structure and size of the result, never on time; the
figures are in bench/bench_hostile_parse.py."""

from __future__ import annotations

import html

import pytest

from exobot.mail import parse
from exobot.mail.parse import MAX_BODY_CHARS, MAX_HTML_NESTING, parse_mail


def html_mail(markup: str | bytes) -> bytes:
    """A single-part text/html mail."""
    body = markup.encode() if isinstance(markup, str) else markup
    head = b"From: a@example.org\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    return head + body


def test_nested_lists_are_flattened_beyond_the_nesting_cap() -> None:
    # 2,000 levels gave a 3.9 MB body (each level indents every line below it).
    parsed = parse_mail(html_mail("<ul><li>item" * 2000))
    lines = [line for line in parsed.body.split("\n") if line.strip()]
    assert len(lines) == 2000
    assert all(line.strip() == "* item" for line in lines)
    # Indentation stops growing at the cap: the deepest line is as deep as level 8.
    widths = {len(line) - len(line.lstrip()) for line in lines}
    assert len(widths) == MAX_HTML_NESTING
    assert len(parsed.body) < 40 * 2000
    assert not parsed.body_truncated


@pytest.mark.parametrize(
    "level", ["<ol><li>q", "<blockquote><p>q", "<table><tr><td>q", "<dl><dd>q"]
)
def test_other_nestings_are_flattened(level: str) -> None:
    parsed = parse_mail(html_mail(level * 3000))
    # Output grows with the input, not with its square (no indentation per level).
    assert len(parsed.body) < 5 * len(level * 3000)
    assert parsed.body.count("q") == 3000


def test_pre_with_a_huge_run_of_spaces_is_shortened() -> None:
    parsed = parse_mail(html_mail("<pre>a" + " " * 40_000 + "b\n" + "\n" * 40_000 + "c</pre>"))
    words = parsed.body.split()
    assert words == ["a", "b", "c"]
    assert len(parsed.body) < 300


def test_runs_of_newlines_in_html_text_collapse() -> None:
    # html2text escapes Markdown with regexes that rescan newline runs from each line start.
    parsed = parse_mail(html_mail("a" + "\n" * 200_000 + "b"))
    assert parsed.body == "a b"


@pytest.mark.parametrize(
    "markup",
    [
        "<a href='" * 20_000,
        "<" * 300_000,
        "<!--" * 30_000 + "x",
        "<![CDATA[" * 20_000,
        "</" * 50_000,
    ],
    ids=["unclosed-tags", "lt-run", "unclosed-comments", "unclosed-cdata", "end-tag-starts"],
)
def test_unclosed_markup_reaches_html2text_as_plain_text(markup: str) -> None:
    # The stdlib tokenizer rescans an unclosed "<" to the end of the input for each one.
    normalized, _ = parse._normalize_html(markup)
    assert "<" not in normalized  # only whole, known tags ever reach html2text
    parsed = parse_mail(html_mail(markup))
    assert len(parsed.body) <= MAX_BODY_CHARS


def test_normalized_html_keeps_structure_and_links_only() -> None:
    markup = (
        '<html><head><title>T</title><style>p{}</style></head><body onload="x()">'
        "<P class=a>Hola &amp; adéu &#8364; &#99999999999999999999;</P>"
        '<a href="https://exo.example/?a=1&amp;b=2" onclick="evil()">enllaç</a>'
        "<script>alert(1)</script><section>sec</section><o:p>office</o:p>"
        "<!-- hidden --><br/></body></html>"
    )
    normalized, truncated = parse._normalize_html(markup)
    assert normalized == (
        "<p>Hola &amp; adéu € \ufffd</p>"
        '<a href="https://exo.example/?a=1&amp;b=2">enllaç</a>'
        "<div>sec</div>office<br>"
    )
    assert not truncated


def test_stray_end_tags_and_dropped_levels_stay_balanced() -> None:
    depth = MAX_HTML_NESTING + 5
    normalized, _ = parse._normalize_html("</ul>" * 3 + "<ul>" * depth + "x" + "</ul>" * depth)
    assert normalized == "<ul>" * MAX_HTML_NESTING + "x" + "</ul>" * MAX_HTML_NESTING


def test_long_body_is_cut_and_flagged() -> None:
    line = "la connexió no va\r\n"
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\n" + (line * 20_000).encode()
    parsed = parse_mail(raw)
    assert parsed.body_truncated
    assert MAX_BODY_CHARS - 2000 <= len(parsed.body) <= MAX_BODY_CHARS
    assert parsed.body.endswith("la connexió no va")  # cut at a line end


def test_huge_html_is_cut_and_flagged() -> None:
    parsed = parse_mail(html_mail("<p>" + "paraula " * 200_000 + "</p>"))
    assert parsed.body_truncated
    assert len(parsed.body) <= MAX_BODY_CHARS
    assert parsed.body.startswith("paraula paraula")


def test_short_body_is_not_flagged() -> None:
    parsed = parse_mail(html_mail("<p>" + html.escape("<curt>") + "</p>"))
    assert parsed.body == "<curt>"
    assert not parsed.body_truncated
