"""A volunteer's Matrix message as plain text, the way a member reads it in a mail.

Element sends what a volunteer types as markdown: the plain `body` is the markdown source
("**Important**", "`ping 10.1.2.3`", "- one"), the `formatted_body` its HTML. Mail to members is
plain text, so the text that is mailed is read from the HTML: emphasis and strike-through lose
their marks, code stays as typed, a link reads "text (url)" (its text alone when both are the
same), list items become "- " / "1. " lines, quotes "> " lines, <br> and paragraphs line breaks,
and a mention pill its display name (a link into the volunteers' rooms means nothing to a
member). Any other element keeps its text; the reply fallback (<mx-reply>) and what is never
shown (scripts, styles) are dropped with their content. Emoji shortcodes Element did not
convert (":smile:") stay as typed.

The HTML is untrusted, and Python 3.11's html.parser is quadratic on some hostile input (64 KB
of unclosed "<a href='x' " took it 20 s). So, as mail HTML is in exobot.mail.parse, it is first
read by the linear tokenizer exobot.core.html_tokens and rewritten into a small well-formed
subset: the elements read below without attributes (a link keeps its href, an ordered list its
start), nesting capped, text decoded by the never-raising exobot.core.text.unescape_html and
escaped again. Only that subset reaches html.parser, which then reads it in one pass.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import unquote

from exobot.core.html_tokens import html_tokens
from exobot.core.people import localpart
from exobot.core.text import unescape_html

#: A formatted body longer than this is not converted (the caller keeps the typed body): no
#: volunteer types 64 KB of formatting, and whatever is read costs loop time.
MAX_HTML_CHARS = 64 * 1024
#: Nor is a text that would come out longer than this (list indents and quote marks add to
#: every line); a Matrix event holds at most 64 KB anyway.
MAX_TEXT_CHARS = 64 * 1024
#: Nor is one with more tags than this that are read (each costs html.parser some 25 µs):
#: a long reply with lists has a few hundred.
MAX_TAGS = 4000
#: List and quote levels beyond this are read as their text only.
MAX_NESTING = 8
#: Attribute text looked at per tag (an href and a start are all that is kept).
MAX_ATTRIBUTES = 8192
#: Where a mention pill (or any link into Matrix) points.
MATRIX_TO = "https://matrix.to/#/"

_HREF = re.compile(r"""(?<![\w-])href\s*+=\s*+(?:"([^"]*+)"|'([^']*+)'|([^\s"'<>`]++))""", re.I)
_START = re.compile(r"""(?<![\w-])start\s*+=\s*+["']?(\d{1,6})""", re.I)
_SPACE = re.compile(r"[ \t\n\r\f]++")
# Elements dropped with all they hold: Matrix's reply fallback, and what no reader sees.
_HIDDEN = frozenset({"mx-reply", "script", "style", "head", "title", "template", "noscript"})
# Paragraph-like blocks: a blank line before and after.
_PARAGRAPHS = frozenset({"p", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "table", "details"})
# Blocks that start and end a line.
_LINES = frozenset({"div", "tr", "dt", "dd", "summary", "caption", "figure", "section"})
_LISTS = frozenset({"ul", "ol"})
_NESTING = _LISTS | {"blockquote"}
_VOID = frozenset({"br", "hr"})
# The elements that reach html.parser; any other's tags are dropped and its text kept.
_CELLS = frozenset({"td", "th"})
_KEPT = _PARAGRAPHS | _LINES | _NESTING | _VOID | _CELLS | {"a", "li", "dl"}


def plain_text(formatted: str, name_of: Callable[[str], str] | None = None) -> str | None:
    """The plain text of a Matrix message's HTML `formatted_body`, as described above; None
    when it is over MAX_HTML_CHARS or MAX_TAGS, or its text over MAX_TEXT_CHARS (the caller
    then keeps the typed body). `name_of(user_id)` names a mention pill whose label is empty or
    the bare id (by default the id's localpart). Pure, and up to a few tenths of a second on
    the most hostile input allowed: callers on the event loop run it in a thread."""
    if len(formatted) > MAX_HTML_CHARS:
        return None
    normalized = _normalized(formatted)
    if normalized is None:
        return None
    reader = _Reader(name_of or localpart)
    reader.feed(normalized)
    reader.close()
    text = reader.text()
    return text if len(text) <= MAX_TEXT_CHARS else None


def _normalized(source: str) -> str | None:
    """`source` as the small well-formed subset html.parser reads in one pass, or None when it
    holds more than MAX_TAGS tags that are read; every character is looked at a bounded number
    of times."""
    out: list[str] = []
    tags = 0
    opened: dict[str, int] = {}  # kept elements open, by name
    dropped: dict[str, int] = {}  # nesting elements past MAX_NESTING, by name
    nesting = 0
    for token in html_tokens(source, _HIDDEN):
        if isinstance(token, str):
            out.append(html.escape(unescape_html(token), quote=False))
            continue
        name, closing, attrs = token
        if name not in _KEPT:
            continue
        tags += 1
        if tags > MAX_TAGS:
            return None
        if closing:
            if dropped.get(name):
                dropped[name] -= 1
            elif opened.get(name) and name not in _VOID:
                opened[name] -= 1
                nesting -= name in _NESTING
                out.append(f"</{name}>")
            continue
        if name in _NESTING:
            if nesting >= MAX_NESTING:
                dropped[name] = dropped.get(name, 0) + 1
                continue
            nesting += 1
        if name not in _VOID:
            opened[name] = opened.get(name, 0) + 1
        out.append(_start_tag(name, attrs[:MAX_ATTRIBUTES]))
    return "".join(out)


def _start_tag(name: str, attrs: str) -> str:
    """A kept start tag, without any attribute but a link's href and a list's start."""
    if name == "a":
        found = _HREF.search(attrs)
        if found:
            href = unescape_html(next(g for g in found.groups() if g is not None))
            href = " ".join(href.split())
            return f'<a href="{html.escape(href, quote=True)}">'
    if name == "ol":
        found = _START.search(attrs)
        if found:
            return f'<ol start="{int(found.group(1))}">'
    return f"<{name}>"


class _Reader(HTMLParser):
    """Writes the normalized HTML out as lines of plain text."""

    def __init__(self, name_of: Callable[[str], str]) -> None:
        super().__init__(convert_charrefs=True)
        self.name_of = name_of
        self.lines: list[str] = []
        self.prefix: str | None = None  # the line being written: its quote marks and indent…
        self.line: list[str] = []  # …and its text; None and [] before its first text
        self.quote = 0  # blockquote depth
        self.lists: list[list[int]] = []  # per open list: [ordered, next number]
        self.marker = ""  # a list item's marker, written before its first text
        self.pre = 0
        self.pre_opened = False  # a newline right after <pre> is no line (as in browsers)
        self.blank: int | None = None  # a blank line is due, at this quote depth at most
        self.links: list[tuple[str, int, int]] = []  # (href, line count, position in line)

    # --- lines -------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.prefix is None:
            if self.blank is not None and self.lines:
                self.lines.append(("> " * min(self.blank, self.quote)).rstrip())
            self.blank = None
            indent = "  " * len(self.lists)
            if self.marker:
                indent = indent[2:] + self.marker
                self.marker = ""
            self.prefix = "> " * self.quote + indent
        self.line.append(text)

    def _end_line(self) -> None:
        if self.prefix is not None:
            self.lines.append((self.prefix + "".join(self.line)).rstrip())
            self.prefix, self.line = None, []

    def _empty_line(self) -> None:
        """End the line, or write an empty one when none was begun (two <br> in a row)."""
        if self.prefix is None:
            self._write(" ")
        self._end_line()

    def _paragraph(self) -> None:
        self._end_line()
        self.blank = self.quote if self.blank is None else min(self.blank, self.quote)

    # --- html.parser -------------------------------------------------------------------------

    def handle_data(self, data: str) -> None:
        if self.pre:
            if self.pre_opened:
                data = data.removeprefix("\n")
                self.pre_opened = False
            first, *rest = data.split("\n")
            self._write(first)
            for piece in rest:
                self._empty_line()
                self._write(piece)
            return
        text = _SPACE.sub(" ", data)
        if self.prefix is None:
            text = text.lstrip(" ")
        self._write(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.pre_opened = False
        if tag == "br":
            self._empty_line()
        elif tag == "hr":
            self._paragraph()
        elif tag == "a":
            self.links.append((values.get("href") or "", len(self.lines), len(self.line)))
        elif tag == "blockquote":
            self._paragraph()
            self.quote += 1
        elif tag in _LISTS:
            if self.lists:
                self._end_line()
            else:
                self._paragraph()
            start = values.get("start")
            self.lists.append([tag == "ol", int(start) if start else 1])
        elif tag == "li":
            self._end_line()
            if self.lists:
                ordered, number = self.lists[-1]
                self.marker = f"{number}. " if ordered else "- "
                self.lists[-1][1] = number + 1
            else:
                self.marker = "- "
        elif tag == "p" and self.lists:
            self._end_line()  # a loose list's paragraphs stay in their item
        elif tag in _PARAGRAPHS:
            self._paragraph()
            if tag == "pre":
                self.pre += 1
                self.pre_opened = True
        elif tag in _LINES or tag == "dl":
            self._end_line()
        elif tag in _CELLS and self.prefix is not None:
            self._write(" | ")  # a table row on one line, its cells apart

    def handle_endtag(self, tag: str) -> None:
        self.pre_opened = False
        if tag == "a":
            self._end_link()
        elif tag == "blockquote":
            self._paragraph()
            self.quote = max(0, self.quote - 1)
        elif tag in _LISTS:
            self._end_line()
            if self.lists:
                self.lists.pop()
            if not self.lists:
                self._paragraph()
        elif tag == "li":
            self._end_line()
            self.marker = ""
        elif tag == "p" and self.lists:
            self._end_line()
        elif tag in _PARAGRAPHS:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._paragraph()
        elif tag in _LINES or tag == "dl":
            self._end_line()

    def _end_link(self) -> None:
        if not self.links:
            return
        href, lines, start = self.links.pop()
        same_line = lines == len(self.lines) and start <= len(self.line)
        label = "".join(self.line[start:]).strip() if same_line else ""
        if href.startswith(MATRIX_TO):
            # A pill: the display name its label shows, never the volunteer's Matrix id.
            user = unquote(href[len(MATRIX_TO) :].split("?", 1)[0])
            if same_line and user.startswith("@") and label in ("", user):
                del self.line[start:]
                self._write(self.name_of(user))
            return
        shown = _shown_target(href)
        if shown and _comparable(shown) != _comparable(label):
            self._write(f" ({shown})" if label else shown)

    # --- the result --------------------------------------------------------------------------

    def text(self) -> str:
        """The lines written, one blank line at most in a row, none at either end."""
        self._end_line()
        kept: list[str] = []
        for line in self.lines:
            if not line.strip("> ") and kept and not kept[-1].strip("> "):
                continue
            kept.append(line)
        return "\n".join(kept).strip("\n")


def _shown_target(href: str) -> str:
    """What a member is shown of a link's target: a web address as it is, a mail address
    without `mailto:`; nothing for any other kind (javascript:, a relative path)."""
    lowered = href.lower()
    if lowered.startswith("mailto:"):
        return href[len("mailto:") :]
    if lowered.startswith(("http://", "https://", "ftp://")):
        return href
    return ""


def _comparable(text: str) -> str:
    """A link's text or target as compared: without scheme, `mailto:` or a final slash
    (`www.exo.cat` is the same as `http://www.exo.cat/`)."""
    text = text.strip().lower()
    for scheme in ("https://", "http://", "mailto:"):
        text = text.removeprefix(scheme)
    return text.rstrip("/")
