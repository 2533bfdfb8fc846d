"""Hostile HTML that made parsing raise or take quadratic time: numeric character
references padded with thousands of zeros (html.unescape's int() refuses more than 4,300
digits) and mails with tens of thousands of links (html2text numbers each link by scanning
all earlier ones). The checks are on the result and on counted work, never on time; the
figures are in bench/bench_hostile_parse.py."""

from __future__ import annotations

import html
from typing import Any

import html2text
import pytest

from exobot.core.text import unescape_html
from exobot.mail.parse import MAX_HTML_LINKS, html_to_text, parse_mail

ZEROS = "0" * 4400  # past the 4,300-digit limit of int() on decimal strings


def html_mail(markup: str) -> bytes:
    """A single-part text/html mail."""
    head = b"From: a@example.org\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    return head + markup.encode()


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        (f"&#{ZEROS}65;", "A"),
        (f"&#x{ZEROS}41;", "A"),
        (f"&#X{ZEROS}41", "A"),
        (f"&#{ZEROS};", "\ufffd"),
        (f"&#{ZEROS}11141110;", "\ufffd"),
        (f"&#x{ZEROS}1100000;", "\ufffd"),
        (f"&#{'9' * 5000};", "\ufffd"),
    ],
    ids=[
        "decimal",
        "hex",
        "hex-no-semicolon",
        "only-zeros",
        "decimal-8-digits",
        "hex-7-digits",
        "long",
    ],
)
def test_zero_padded_charref_in_text_is_neutralised(reference: str, shown: str) -> None:
    # Leading zeros do not count: the reference means what it would without them (as in
    # a browser), and one beyond any code point becomes U+FFFD, like html.unescape does.
    parsed = parse_mail(html_mail(f"<p>a{reference}z</p>"))  # "z": not a hex digit
    assert parsed.body == f"a{shown}z"


@pytest.mark.parametrize(
    ("reference", "shown"),
    [(f"&#{ZEROS}65;", "A"), (f"&#x{ZEROS}41;", "A"), (f"&#{ZEROS}99999999;", "\ufffd")],
    ids=["decimal", "hex", "decimal-8-digits"],
)
def test_zero_padded_charref_in_href_is_neutralised(reference: str, shown: str) -> None:
    parsed = parse_mail(html_mail(f'<p>see <a href="https://exo.example/?n={reference}">here</a>'))
    assert parsed.body == f"see [here][1]\n\n   [1]: https://exo.example/?n={shown}"


@pytest.mark.parametrize(
    "text",
    [
        "&#65;&#x41;&#X41&#0065;&#x0041;&#00;&#x0;&#;&#x;&#xg&#",
        "&#0000000065abc &#00012345678;9 &#x00000000110000; &#00000001114111;",
        "&#128;&#x80;&#0000013;&#xD800;&#amp;&amp;#065; &#12345678abcdef",
    ],
)
def test_short_references_decode_as_html_unescape_does(text: str) -> None:
    # Dropping zeros must never change what a reference means.
    assert unescape_html(text) == html.unescape(text)


class Html2TextSpy:
    """Counts what html2text is handed and how many earlier links it scans to number one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hrefs = 0
        self.scanned = 0
        handle = html2text.HTML2Text.handle
        previous_index = html2text.HTML2Text.previousIndex
        spy = self

        def counting_handle(converter: html2text.HTML2Text, data: str) -> str:
            spy.hrefs += data.count("<a href=")
            return handle(converter, data)

        def counting_previous_index(converter: html2text.HTML2Text, attrs: Any) -> Any:
            spy.scanned += len(converter.a)
            return previous_index(converter, attrs)

        monkeypatch.setattr(html2text.HTML2Text, "handle", counting_handle)
        monkeypatch.setattr(html2text.HTML2Text, "previousIndex", counting_previous_index)


def test_thirty_thousand_links_keep_the_first_targets_and_bounded_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = Html2TextSpy(monkeypatch)
    parsed = parse_mail(html_mail("".join(f"<a href={i}>x</a>" for i in range(30_000))))
    # html2text sees a bounded number of links, so its scan of earlier links stays bounded
    # (26,900 links took it 26 s before, past the sandbox's 10 s).
    assert spy.hrefs == MAX_HTML_LINKS
    assert spy.scanned <= MAX_HTML_LINKS * (MAX_HTML_LINKS - 1) // 2
    # The first links read as today: references in the text, targets listed at the end.
    assert parsed.body.startswith("[x][1][x][2][x][3]")
    assert "\n   [1]: 0\n   [2]: 1\n" in parsed.body
    assert parsed.body.endswith(f"\n   [{MAX_HTML_LINKS}]: {MAX_HTML_LINKS - 1}")
    # Links past the cap keep their text only.
    assert f"[x][{MAX_HTML_LINKS}]xxxx" in parsed.body
    assert f"[{MAX_HTML_LINKS + 1}]" not in parsed.body


def test_ordinary_links_render_as_today() -> None:
    markup = (
        "<p>see <a href=https://exo.example/x>here</a> and "
        '<a href="https://exo.example/y">there</a>, <a href=https://exo.example/x>again</a></p>'
        "<p>bye</p>"
    )
    assert html_to_text(markup) == (
        "see [here][1] and [there][2], [again][1]\n\nbye\n\n"
        "   [1]: https://exo.example/x\n   [2]: https://exo.example/y"
    )


def test_links_up_to_the_cap_all_keep_their_target() -> None:
    text = html_to_text("".join(f"<a href=t{i}>x</a> " for i in range(MAX_HTML_LINKS)))
    assert text.count("]: t") == MAX_HTML_LINKS
