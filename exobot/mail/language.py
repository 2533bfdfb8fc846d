"""The language a member wrote in, detected from the text of their mail.

Lingua (lingua-language-detector) ships its n-gram models inside the package, so nothing is
fetched at run time; it is limited to the languages exobot has catalogs for
(exobot.core.languages.LANGUAGES). Detection costs a few milliseconds of CPU per mail, so it
runs in the parse worker (exobot.mail.sandbox), never on the event loop. When the text is too
short or too mixed to tell the languages apart, the answer is None and the caller falls back to
the configured `language`.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from exobot.core.languages import LANGUAGES

log = logging.getLogger("exobot.mail.language")

#: At most this many characters of a mail are looked at: the first lines say the language,
#: and the cost grows with the length.
MAX_CHARS = 1000
#: The best language must be this much more likely than the next one (confidences add up to
#: 1); closer calls ("no va", "urgent") are left to the configured language. Measured on
#: tests/mail/language_corpus.py: whole mails are all right at any margin up to 0.3; at 0.2
#: no four-word opening was given a wrong language (8 of 90 fell back).
MIN_MARGIN = 0.2

_QUOTE = re.compile(r"^\s*>.*$", re.MULTILINE)
_SIGNATURE = re.compile(r"^-- ?$", re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]{2,}")
#: Fewer different words than this never tell a language.
MIN_WORDS = 2


@functools.cache
def _detector() -> tuple[Any, dict[Any, str]] | None:
    """One detector per process and its languages' codes, built on first use; None when it
    cannot be (logged once). Imported here, not with the module: the library maps 100 MB,
    which only the parse workers need. Its models load on the first detection, a second or
    two; warm_up does that before the first mail."""
    try:
        from lingua import IsoCode639_1, LanguageDetectorBuilder
    except Exception:  # a broken install or too little memory: mail still flows
        log.exception("language detection is off: the detector cannot be loaded")
        return None
    codes = {getattr(IsoCode639_1, code.upper()): code for code in LANGUAGES}
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build(), codes


def text_for_detection(subject: str, body: str) -> str:
    """What the detection reads: the subject and the body without quoted lines or the
    signature, at most MAX_CHARS characters."""
    body = _SIGNATURE.split(body[: MAX_CHARS * 4], maxsplit=1)[0]
    body = _QUOTE.sub("", body)
    text = f"{subject}\n{body}"
    return " ".join(text.split())[:MAX_CHARS]


def detect_language(subject: str, body: str) -> str | None:
    """The language (one of LANGUAGES) the mail is written in, or None when the text does not
    tell it clearly enough."""
    text = text_for_detection(subject, body)
    # One word ("router", "urgent", "ok ok") is shared by too many languages to say.
    if len({word.lower() for word in _WORD.findall(text)}) < MIN_WORDS:
        return None
    loaded = _detector()
    if loaded is None:
        return None
    detector, codes = loaded
    try:
        values = detector.compute_language_confidence_values(text)
    except Exception:
        log.exception("language detection failed")
        return None
    if not values:
        return None
    best = values[0]
    runner_up = values[1].value if len(values) > 1 else 0.0
    if best.value - runner_up < MIN_MARGIN:
        return None
    return codes.get(best.language.iso_code_639_1)


def warm_up() -> None:
    """Load the models now (a parse worker calls this before its first mail)."""
    detect_language("", "Bon dia, no em funciona internet des d'ahir.")
