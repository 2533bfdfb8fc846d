"""The languages exobot speaks, declared once, and the marker for messages to translate."""

from __future__ import annotations

#: Every language with a catalog; the first is the default for members and volunteers.
LANGUAGES: tuple[str, ...] = ("ca", "es", "en")
DEFAULT_LANGUAGE = "ca"
#: The language message ids are written in (gettext's source language).
SOURCE_LANGUAGE = "en"


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional name for the marker
    """Mark `message` for extraction into the catalogs without translating it here: it is
    translated where it is shown, in the reader's language."""
    return message


#: Each language's name, a message id translated into the reader's language.
LANGUAGE_NAMES: dict[str, str] = {
    "ca": N_("Catalan"),
    "es": N_("Spanish"),
    "en": N_("English"),
}


# The words an operator may type for a language besides its code, in any of our languages.
_LANGUAGE_WORDS: dict[str, str] = {
    "catala": "ca",
    "catalan": "ca",
    "castella": "es",
    "castellano": "es",
    "espanol": "es",
    "spanish": "es",
    "angles": "en",
    "ingles": "en",
    "english": "en",
}


def language_code(word: str) -> str | None:
    """The code (one of LANGUAGES) a typed word names: `es`, `castellà`, `Spanish`…; None
    for a word naming none of them."""
    import unicodedata  # only here: the module is imported everywhere and stays light

    plain = "".join(
        c for c in unicodedata.normalize("NFKD", word.strip().lower()) if c.isascii()
    )
    if plain in LANGUAGES:
        return plain
    return _LANGUAGE_WORDS.get(plain)


def ngettext_noop(singular: str, plural: str) -> tuple[str, str]:
    """Mark a plural message pair for extraction (translated later with ngettext)."""
    return singular, plural
