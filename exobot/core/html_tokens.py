"""One linear pass over untrusted HTML: its text runs and its tags, nothing else.

Python's html.parser (and html2text on top of it) is quadratic on some hostile input: an
unclosed "<", "<!--" or "<a href='x' " is rescanned to the end of the text from every one of
them. Mail HTML (exobot.mail.parse) and a volunteer's Matrix HTML (exobot.matrix.plain) are
therefore first read by `html_tokens`, which looks at every character a bounded number of
times, and only the small well-formed HTML their callers write from it reaches html.parser.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Set

# A tag, comment or declaration. Possessive quantifiers: a "<" that opens no whole tag costs
# one scan up to the next "<" or ">", never a scan to the end of the text.
_TOKEN = re.compile(
    r"<(?:(?P<comment>!--)|(?P<declaration>[!?])"
    r"|(?P<slash>/?)(?P<name>[A-Za-z][A-Za-z0-9:-]*+)(?P<attrs>[^<>]*+)>)"
)


#: A start or end tag as written: (name lower-cased, whether it is an end tag, the raw text
#: between the name and ">"; unbounded, callers cut what they read of it). A plain tuple, not a
#: NamedTuple: building one of those costs more than the rest of the pass does per tag.
Tag = tuple[str, bool, str]


@functools.cache
def _hidden_end(name: str) -> re.Pattern[str]:
    """The end tag of a hidden element `name` (its ">" may be missing: it then ends before
    the next "<")."""
    return re.compile(rf"</{re.escape(name)}\b[^<>]*+>?", re.I)


def html_tokens(source: str, hidden: Set[str] = frozenset()) -> Iterator[str | Tag]:
    """The text runs (`str`, never empty, character references left as written) and tags of
    `source`, in order. Comments and declaration-like "<!…>" and "<?…>" are skipped (an
    unclosed comment hides the rest of the text, as in browsers), and so are the elements
    named in `hidden` (lower-case names) with all they hold, up to their end tag or, when it
    is missing, the end of the text. Anything else, stray "<" and ">" included, is text.
    Linear in len(source); a caller may stop reading at any point."""
    position, length = 0, len(source)
    search = _TOKEN.search
    while position < length:
        match = search(source, position)
        if match is None:
            yield source[position:]
            return
        start, end = match.span()
        if start > position:
            yield source[position:start]
        position = end
        # One groups() call: per tag it costs less than asking for each group by name.
        comment, declaration, slash, name, attrs = match.groups()
        if comment:
            close = source.find("-->", position)
            position = length if close < 0 else close + 3
        elif declaration:
            close = source.find(">", position)
            position = length if close < 0 else close + 1
        else:
            name = name.lower()
            if slash:
                yield name, True, attrs
            elif name in hidden:
                hidden_end = _hidden_end(name).search(source, position)
                position = length if hidden_end is None else hidden_end.end()
            else:
                yield name, False, attrs
