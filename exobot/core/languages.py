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


def ngettext_noop(singular: str, plural: str) -> tuple[str, str]:
    """Mark a plural message pair for extraction (translated later with ngettext)."""
    return singular, plural
