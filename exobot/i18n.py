"""Translations at run time: gettext catalogs compiled from `exobot/locale/*/LC_MESSAGES/*.po`.

Message ids are the English texts, written where they are used (`say(language, "…")`,
`N_("…")` in tables), with `{name}` brace placeholders filled after translation. English is
the source language: its catalog may leave every msgstr empty (gettext returns the id).

Each gettext domain has its own locale directory: "exobot" for the core, and one per plugin
(`add_domain`), whose lookups fall back to the core's domain. A missing translation or a bad
placeholder raises when `STRICT` is on (the test suite turns it on); in production the English
id is shown and the miss is logged once.
"""

from __future__ import annotations

import gettext
import logging
import string
import threading
from pathlib import Path

from babel.support import Translations

from exobot.core.languages import DEFAULT_LANGUAGE, LANGUAGES, SOURCE_LANGUAGE

log = logging.getLogger("exobot.i18n")

CORE_DOMAIN = "exobot"
LOCALE_DIR = Path(__file__).parent / "locale"

#: Raise instead of falling back (missing translation, missing or bad placeholder).
STRICT = False

_lock = threading.Lock()
_domains: dict[str, Path] = {CORE_DOMAIN: LOCALE_DIR}
_cache: dict[tuple[str, str], gettext.NullTranslations] = {}
_reported: set[tuple[str, str, str]] = set()


class MissingTranslation(LookupError):
    """A message id has no translation in a language that must have one (STRICT only)."""


def _report(domain: str, language: str, what: str) -> None:
    """Raise under STRICT, else log `what` once per domain and language."""
    if STRICT:
        raise MissingTranslation(f"{what} (domain {domain!r}, language {language!r})")
    key = (domain, language, what)
    if key not in _reported:
        _reported.add(key)
        log.warning("%s (domain %r, language %r): shown in English", what, domain, language)


class _Missing(gettext.NullTranslations):
    """The end of every fallback chain: a lookup that got here was not translated."""

    def __init__(self, domain: str, language: str) -> None:
        super().__init__()
        self.domain = domain
        self.language = language

    def _miss(self, msgid: str) -> None:
        if self.language != SOURCE_LANGUAGE:
            _report(self.domain, self.language, f"no translation for {msgid!r}")

    def gettext(self, message: str) -> str:
        self._miss(message)
        return message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        self._miss(msgid1)
        return msgid1 if n == 1 else msgid2

    def pgettext(self, context: str, message: str) -> str:
        self._miss(f"{context}|{message}")
        return message

    def npgettext(self, context: str, msgid1: str, msgid2: str, n: int) -> str:
        self._miss(f"{context}|{msgid1}")
        return msgid1 if n == 1 else msgid2


def language_or_default(language: str | None) -> str:
    """A supported language: `language` itself, its base (`ca-ES` → `ca`) or the default."""
    if not language:
        return DEFAULT_LANGUAGE
    lowered = language.lower().replace("_", "-")
    if lowered in LANGUAGES:
        return lowered
    base = lowered.split("-", 1)[0]
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def add_domain(domain: str, localedir: str | Path) -> None:
    """Make a plugin's catalogs (`localedir/LANG/LC_MESSAGES/DOMAIN.mo`) available."""
    with _lock:
        _domains[domain] = Path(localedir)
        for key in [key for key in _cache if key[0] == domain]:
            del _cache[key]


def remove_domain(domain: str) -> None:
    """Forget a plugin's domain (at its stop); the core's domain cannot be removed."""
    if domain == CORE_DOMAIN:
        raise ValueError("the core's domain cannot be removed")
    with _lock:
        _domains.pop(domain, None)
        for key in [key for key in _cache if key[0] == domain]:
            del _cache[key]


def domains() -> dict[str, Path]:
    """The known domains and their locale directories."""
    return dict(_domains)


def _load(domain: str, language: str) -> gettext.NullTranslations:
    localedir = _domains.get(domain)
    if localedir is None:
        _report(domain, language, "unknown gettext domain")
        localedir = Path("/nonexistent")
    loaded = Translations.load(str(localedir), [language], domain)
    if not isinstance(loaded, Translations) and language != SOURCE_LANGUAGE:
        _report(domain, language, f"no compiled catalog under {localedir} (run `make catalogs`)")
    fallback = _load_cached(CORE_DOMAIN, language) if domain != CORE_DOMAIN else None
    if not isinstance(loaded, Translations):
        loaded = gettext.NullTranslations()
    loaded.add_fallback(fallback if fallback is not None else _Missing(domain, language))
    return loaded


def _load_cached(domain: str, language: str) -> gettext.NullTranslations:
    key = (domain, language)
    found = _cache.get(key)
    if found is None:
        found = _load(domain, language)
        with _lock:
            found = _cache.setdefault(key, found)
    return found


class Translator:
    """gettext, ngettext and pgettext of one language and domain (plugin domains fall back to
    the core's)."""

    def __init__(self, language: str, domain: str = CORE_DOMAIN) -> None:
        self.language = language_or_default(language)
        self.domain = domain
        self._translations = _load_cached(domain, self.language)

    def gettext(self, message: str) -> str:
        """`message` translated."""
        return self._translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The form of `singular`/`plural` for `n`, translated."""
        return self._translations.ngettext(singular, plural, n)

    def pgettext(self, context: str, message: str) -> str:
        """`message` in `context`, translated."""
        return self._translations.pgettext(context, message)

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        """The plural form in `context`, translated."""
        return self._translations.npgettext(context, singular, plural, n)


def translator(language: str | None, domain: str = CORE_DOMAIN) -> Translator:
    """The translator for `language` (unsupported → the default language) and `domain`."""
    return Translator(language_or_default(language), domain)


class _Lenient(string.Formatter):
    """A formatter that shows a missing parameter as `{name}` instead of raising."""

    def get_value(self, key: int | str, args: object, kwargs: dict[str, object]) -> object:  # type: ignore[override]
        if isinstance(key, str) and key in kwargs:
            return kwargs[key]
        return "{" + str(key) + "}"


_LENIENT = _Lenient()


def fill(text: str, params: dict[str, object], *, domain: str = CORE_DOMAIN) -> str:
    """Brace-format a translated text; lenient at run time (a missing parameter shows as
    `{name}` and is logged), raising under STRICT."""
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        if STRICT:
            raise
        log.warning("Message %r could not be filled (%s: %s)", text, type(error).__name__, error)
        try:
            return _LENIENT.format(text, **params)
        except (ValueError, IndexError, AttributeError):
            return text


def say(language: str | None, msgid: str, domain: str = CORE_DOMAIN, **params: object) -> str:
    """`msgid` translated into `language` and filled with `params`."""
    return fill(translator(language, domain).gettext(msgid), params, domain=domain)


def say_plural(
    language: str | None,
    singular: str,
    plural: str,
    n: int,
    domain: str = CORE_DOMAIN,
    **params: object,
) -> str:
    """The plural form for `n`, translated and filled (`count` defaults to `n`)."""
    params.setdefault("count", n)
    return fill(translator(language, domain).ngettext(singular, plural, n), params, domain=domain)


def reset() -> None:
    """Forget loaded catalogs and reported misses (tests, or after compiling anew)."""
    with _lock:
        _cache.clear()
        _reported.clear()


__all__ = [
    "CORE_DOMAIN",
    "LANGUAGES",
    "LOCALE_DIR",
    "MissingTranslation",
    "Translator",
    "add_domain",
    "fill",
    "language_or_default",
    "remove_domain",
    "reset",
    "say",
    "say_plural",
    "translator",
]
