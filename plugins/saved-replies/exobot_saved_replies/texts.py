"""The pure rules of saved replies: names, the text a ticket gets, and the substitution.

Nothing here touches a database or a server, so the rules are unit-tested alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exobot.core.languages import LANGUAGES, N_
from exobot.core.text import greeting_name

#: One word, lower case: what follows `!template suport#N`.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
NAME_CHARS = 40
#: The only placeholders. `{nom}` is the Catalan spelling of `{name}`.
PLACEHOLDERS = ("name", "nom", "ticket")
# With the one space before it, which an empty name takes along: "Hola {nom}," is "Hola,".
_PLACEHOLDER = re.compile(r"( ?)\{(name|nom|ticket)\}")


def normal_name(raw: str) -> str | None:
    """The saved reply's name as stored (stripped, NFC, lower case), or None when it is not
    one word of letters a-z, digits, `-` and `_` (at most 40)."""
    name = unicodedata.normalize("NFC", raw.strip()).lower()
    return name if NAME.fullmatch(name) else None


@dataclass(frozen=True)
class Values:
    """What the placeholders stand for on one ticket."""

    name: str  # the requestor's display name; "" when unknown
    ticket: str  # the reference, `suport#N`


def substitute(text: str, values: Values) -> str:
    """`text` with `{name}`/`{nom}` and `{ticket}` replaced, literally and in one pass.

    Never a general format on stored text: any other brace (`{0.__class__}`, `{x`, `{{`) stays
    as written, and a display name that itself contains `{ticket}` is not substituted again.
    An empty name (none fit to greet) takes the space before it along: "Hola," not "Hola ,".
    """
    replacement = {"name": values.name, "nom": values.name, "ticket": values.ticket}

    def replaced(match: re.Match[str]) -> str:
        space, value = match.group(1), replacement[match.group(2)]
        return space + value if value else ""

    return _PLACEHOLDER.sub(replaced, text)


def wanted_language(ticket_language: str | None, default_language: str) -> str:
    """The language a saved reply is mailed in: the ticket's, which the greeting, the signature
    and the headers around it speak; the configured `language` when the ticket's is unknown
    (none of LANGUAGES)."""
    return ticket_language if ticket_language in LANGUAGES else default_language


def choose_language(
    available: Iterable[str], ticket_language: str | None, default_language: str
) -> str | None:
    """The language of the text a ticket gets (`wanted_language`), or None when the saved reply
    has no text in it. There is no other fallback: a text in another language would be mailed
    under a greeting, a signature and headers in the ticket's, one mail in two languages."""
    language = wanted_language(ticket_language, default_language)
    return language if language in set(available) else None


def choose_text(
    texts: Mapping[str, str], ticket_language: str | None, default_language: str
) -> tuple[str, str] | None:
    """(language, text) of the saved reply for a ticket, by `choose_language`."""
    language = choose_language(texts, ticket_language, default_language)
    return (language, texts[language]) if language is not None else None


def requestor_name(requestor: str, mails: Iterable[Mapping[str, object]]) -> str:
    """The requestor's name to greet with: the `from_name` of their latest mail that has one
    fit to greet (`mails` are the `data` of the ticket's mail entries, oldest first), sent
    from the requestor's own address; "" when none has one. Mails from other participants
    never lend their names. The name goes into a mail the association signs, so it is read
    as the core's acknowledgements read it (exobot.core.text.greeting_name): a From name that
    is a sentence, a link or an address ("IMPORTANT: log in at https://…") greets nobody."""
    found = ""
    for data in mails:
        sender = str(data.get("from") or "").strip().lower()
        name = greeting_name(str(data.get("from_name") or ""))
        if sender == requestor.strip().lower() and name:
            found = name
    return found


@dataclass(frozen=True)
class Form:
    """A saved reply as typed in the web form, read and checked."""

    name: str
    language: str
    text: str
    problems: tuple[str, ...]  # message ids of what is wrong (empty: it can be saved)


BAD_NAME = N_("The name must be one word in lower case: letters a-z, digits, - and _ (at most 40).")
BAD_LANGUAGE = N_("Choose one of the languages.")
NO_TEXT = N_("Write the text.")
TOO_LONG = N_("The text is too long: at most {max} characters.")


def read_form(fields: Mapping[str, object], max_length: int) -> Form:
    """The name, language and text of a submitted form, with what is wrong with them. The text
    keeps its line breaks (as `\\n`) and loses surrounding blank space."""

    def field(key: str) -> str:
        value = fields.get(key)
        return value if isinstance(value, str) else ""

    raw_name = field("name")
    name = normal_name(raw_name)
    language = field("language").strip()
    text = field("text").replace("\r\n", "\n").replace("\r", "\n").strip()
    problems = []
    if name is None:
        problems.append(BAD_NAME)
    if language not in LANGUAGES:
        problems.append(BAD_LANGUAGE)
    if not text:
        problems.append(NO_TEXT)
    elif len(text) > max_length:
        problems.append(TOO_LONG)
    return Form(name or raw_name.strip()[:NAME_CHARS], language, text, tuple(problems))
