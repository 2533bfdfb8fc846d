"""Settings under `plugins.procedures.`: the procedure types (their words per language, shown
names, whether they need a service, whether the member is mailed, their effect on the member
directory), the treasury queue, when a pending procedure shows in the digest, what a member
number looks like, the member export's columns, and the non-member acknowledgement."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from exobot.config import Duration
from exobot.core.languages import LANGUAGES
from exobot.plugins import PluginConfig


def fold(word: str) -> str:
    """`Tràmit` → `tramit`: lower case without accents (and `l·l` → `ll`), for matching words
    typed in commands."""
    text = unicodedata.normalize("NFKD", word.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.replace("·", "").replace("\u2027", "")


class ProcedureType(BaseModel):
    """One kind of procedure (join, leave, …): the words that name it in commands, its names
    as shown to people, whether it needs a SERVICE, whether the requestor is mailed, and its
    effect on the member directory when it is done."""

    model_config = ConfigDict(extra="forbid")

    #: Per language, the words typed in commands ({"en": ["join"], "ca": ["alta"]}).
    words: dict[str, list[str]]
    #: Per language, the shown name ({"ca": "alta de soci", "en": "membership join"}).
    names: dict[str, str]
    #: Whether a SERVICE reference is required.
    service: bool = False
    #: Whether the requestor gets a short mail when it is created, done and cancelled.
    notify: bool = True
    #: The effect on the member directory when it is done.
    directory: Literal["join", "leave"] | None = None

    @field_validator("words")
    @classmethod
    def _words(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        clean: dict[str, list[str]] = {}
        for language, words in value.items():
            kept = []
            for word in words:
                word = str(word).strip()
                if not word or any(ch.isspace() for ch in word):
                    raise ValueError(f"{word!r} ({language}): a type word is one word")
                if word.upper().startswith("P-") or word.isdigit():
                    raise ValueError(f"{word!r} ({language}) would read as a reference")
                kept.append(word)
            clean[language] = kept
        if not any(clean.values()):
            raise ValueError("at least one word is needed")
        return clean

    @field_validator("names")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        value = {language: " ".join(str(name).split()) for language, name in value.items()}
        if not any(value.values()):
            raise ValueError("at least one name is needed")
        return value

    def all_words(self) -> list[str]:
        """Every word of every language, as written."""
        return [word for words in self.words.values() for word in words]


class MembersCsv(BaseModel):
    """The columns of the management tool's member export that `exobot members import` reads
    (header names), the values that mean "active", and how the file is written."""

    model_config = ConfigDict(extra="forbid")

    number: str = "number"
    address: str = "email"
    #: The second address (billing); None: the export has none.
    address2: str | None = "email2"
    #: The column saying whether the member is active; None: every listed member is.
    active: str | None = None
    active_values: list[str] = Field(
        default_factory=lambda: ["1", "yes", "sí", "si", "true", "actiu", "active"]
    )
    delimiter: str = ","
    encoding: str = "utf-8"

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if value == "\\t":
            value = "\t"
        if len(value) != 1:
            raise ValueError("one character, like , or ; (\\t for a tab)")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


def _type(
    words: dict[str, list[str]], names: dict[str, str], **kwargs: object
) -> ProcedureType:
    return ProcedureType(words=words, names=names, **kwargs)  # type: ignore[arg-type]


def default_types() -> dict[str, ProcedureType]:
    """The six procedures of the issue, with their English, Catalan and Spanish words."""
    return {
        "join": _type(
            {"en": ["join"], "ca": ["alta"], "es": ["alta"]},
            {"ca": "alta de soci", "es": "alta de socio", "en": "membership join"},
            directory="join",
        ),
        "leave": _type(
            {"en": ["leave"], "ca": ["baixa"], "es": ["baja"]},
            {"ca": "baixa de soci", "es": "baja de socio", "en": "membership leave"},
            directory="leave",
        ),
        "email": _type(
            {"en": ["email"], "ca": ["correu"], "es": ["correo"]},
            {"ca": "canvi d'adreça de correu", "es": "cambio de dirección de correo",
             "en": "email address change"},
        ),
        "bank": _type(
            {"en": ["bank"], "ca": ["banc"], "es": ["banco"]},
            {"ca": "canvi de dades bancàries", "es": "cambio de datos bancarios",
             "en": "bank details change"},
        ),
        "service-add": _type(
            {"en": ["service-add"], "ca": ["servei-alta"], "es": ["servicio-alta"]},
            {"ca": "alta de servei", "es": "alta de servicio", "en": "service added"},
            service=True,
        ),
        "service-remove": _type(
            {"en": ["service-remove"], "ca": ["servei-baixa"], "es": ["servicio-baja"]},
            {"ca": "baixa de servei", "es": "baja de servicio", "en": "service removed"},
            service=True,
        ),
    }


class ProceduresConfig(PluginConfig):
    """Settings under `plugins.procedures.`."""

    #: The queue procedures are handled in; creating one moves its ticket there. The default
    #: is checked too: a configuration without a `tresoreria` queue must name its own.
    queue: str = Field(default="tresoreria", validate_default=True)
    #: The procedure types by name (replacing the defaults as a whole when given).
    types: dict[str, ProcedureType] = Field(default_factory=default_types)
    #: A pending procedure older than this is listed in the queue room's daily digest.
    pending_after: Duration = timedelta(days=7)
    #: What a member number looks like (a regular expression matching the whole number).
    member_pattern: str = r"[0-9]{1,10}"
    #: The member export's columns for `exobot members import`.
    members_csv: MembersCsv = Field(default_factory=MembersCsv)
    #: Where to join, said in the non-member acknowledgement.
    join_url: str = "https://exo.cat/"
    #: The text naming guifi.net's public channels; None: the catalog's default.
    public_channels: str | None = None
    #: Per language, the non-member acknowledgement paragraph replacing the catalog's.
    non_member_notice: dict[str, str] = Field(default_factory=dict)

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str, info: ValidationInfo) -> str:
        """The queue, lower case; one of the configured queues when the core configuration is
        at hand (check-config and every start check it before the plugin starts)."""
        queue = value.strip().lower()
        core = (info.context or {}).get("core")
        if core is not None and queue not in core.tickets.queues:
            known = ", ".join(sorted(core.tickets.queues))
            raise ValueError(f"unknown queue {queue!r} (known: {known})")
        return queue

    @field_validator("member_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        if compiled.fullmatch("P-1") or compiled.fullmatch(""):
            raise ValueError("must not match P-N references or nothing")
        return value

    @field_validator("non_member_notice")
    @classmethod
    def _notice_languages(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"unknown language {', '.join(unknown)} (known: {', '.join(LANGUAGES)})")
        return value

    @model_validator(mode="after")
    def _distinct_words(self) -> ProceduresConfig:
        if not self.types:
            raise ValueError("types: at least one procedure type is needed")
        seen: dict[str, str] = {}
        for name, kind in self.types.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
                raise ValueError(f"types.{name}: a type name is lower-case letters, digits, -")
            for word in [name, *kind.all_words()]:
                other = seen.setdefault(fold(word), name)
                if other != name:
                    raise ValueError(
                        f"types.{name}: the word {word!r} already names the type {other!r}"
                    )
        return self

    def member_regex(self) -> re.Pattern[str]:
        """The compiled member-number pattern."""
        return re.compile(self.member_pattern)
