"""Search words as people type them, checked once for every channel (chat, pages, API)."""

from __future__ import annotations

import unicodedata

from exobot.core.service import InvalidRequest

MAX_PAGE = 1_000_000  # beyond any real list; keeps offsets far inside the database's integers


def search_terms(words: str) -> list[str]:
    """The words of a search, split on white space; InvalidRequest("bad_search") when they hold
    a character no text can contain: a control character such as NUL (the full-text engines
    refuse it with an error) or a lone surrogate (not encodable)."""
    terms = words.split()
    for term in terms:
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in term):
            raise InvalidRequest("bad_search", "the search words hold a control character")
    return terms


def check_page(page: int) -> int:
    """A list page number; InvalidRequest("bad_page") when it is beyond any real list."""
    if not 1 <= page <= MAX_PAGE:
        raise InvalidRequest("bad_page", f"no page {page}", max=MAX_PAGE)
    return page
