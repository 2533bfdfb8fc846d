"""Forms generated from the action registry for the ticket page: one per action the web may
ask for that the page has no form of its own for (a plugin's), built from its declaration.

Each argument becomes one field by its kind, labelled in the action's own catalog domain; an
argument that suggests values gets them as a `<datalist>`. A failing `suggest` (a plugin's
bug) leaves its field without suggestions and is logged: it never breaks the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exobot.core.actions import ActionRegistry, ActionSpec, ArgKind, Argument
from exobot.core.model import Status
from exobot.i18n import say
from exobot.web.actions import web_actions

log = logging.getLogger("exobot.web.forms")

# The kinds a generated form can ask for (the others are chat's own: filters, `!new`, …).
FIELD_KINDS = frozenset(
    {ArgKind.WORD, ArgKind.TITLE, ArgKind.USER, ArgKind.TEXT, ArgKind.QUEUE, ArgKind.STATUS}
)
# The most suggestions one field offers (a datalist is a hint, not a listing).
MAX_SUGGESTIONS = 200


@dataclass(frozen=True)
class FormField:
    """One field of a generated form: `control` is "input", "textarea" or "select"."""

    name: str
    id: str
    kind: str
    control: str
    label: str
    required: bool
    options: tuple[tuple[str, str], ...] = ()  # a select's (value, words)
    suggestions: tuple[str, ...] = ()  # an input's datalist

    @property
    def list_id(self) -> str:
        """The id of the field's datalist."""
        return f"{self.id}-suggestions"


@dataclass(frozen=True)
class ActionForm:
    """The form of one registered action: its name (the URL's), its chat word in the reader's
    language, its summary, its fields and, when the action declares them (`web_label`,
    `web_button`), its heading and button text in the reader's language."""

    name: str
    word: str
    summary: str
    fields: tuple[FormField, ...]
    label: str = ""
    button: str = ""

    @property
    def heading(self) -> str:
        """The form's heading: the declared label, else the word with a capital."""
        return self.label or self.word[:1].upper() + self.word[1:]

    @property
    def submit(self) -> str:
        """The words on the form's button: the declared ones, else the heading."""
        return self.button or self.heading

    @property
    def kind(self) -> str:
        """The form's layout class (as the page's own forms): one short field → inline."""
        short = len(self.fields) == 1 and self.fields[0].control != "textarea"
        return "inline" if short else "stack"


def generated_actions(registry: ActionRegistry, dedicated: Iterable[str]) -> list[ActionSpec]:
    """The web's ticket actions of `registry` that have no `dedicated` form and whose
    arguments a form can ask for, in declaration order."""
    own = set(dedicated)
    found = []
    for name in web_actions(registry):
        if name in own:
            continue
        spec = registry.get(name)
        if all(argument.kind in FIELD_KINDS for argument in spec.arguments):
            found.append(spec)
    return found


async def action_forms(
    specs: Iterable[ActionSpec],
    *,
    ticket: int,
    language: str,
    queues: Iterable[str],
    statuses: Iterable[Status],
    status_words: dict[Status, str],
) -> list[ActionForm]:
    """The forms of `specs` for the page of `ticket`, worded in `language`."""
    forms = []
    for spec in specs:
        fields = []
        for argument in spec.arguments:
            fields.append(
                await _field(
                    spec,
                    argument,
                    ticket=ticket,
                    language=language,
                    queues=tuple(queues),
                    statuses=tuple(statuses),
                    status_words=status_words,
                )
            )
        words = _words(spec, language)
        forms.append(
            ActionForm(
                spec.name,
                spec.word_for(language),
                words(spec.summary),
                tuple(fields),
                label=words(spec.web_label),
                button=words(spec.web_button),
            )
        )
    return forms


def _words(spec: ActionSpec, language: str) -> Callable[[str], str]:
    """Translate one of `spec`'s message ids into `language` in its domain; "" stays ""."""

    def words(msgid: str) -> str:
        return say(language, msgid, domain=spec.domain) if msgid else ""

    return words


async def _field(
    spec: ActionSpec,
    argument: Argument,
    *,
    ticket: int,
    language: str,
    queues: tuple[str, ...],
    statuses: tuple[Status, ...],
    status_words: dict[Status, str],
) -> FormField:
    label = say(language, argument.label, domain=spec.domain) if argument.label else argument.name
    common = {
        "name": argument.name,
        "id": f"act-{spec.name}-{argument.name}",
        "kind": argument.kind.value,
        "label": label[:1].upper() + label[1:],
        "required": argument.required,
    }
    if argument.kind is ArgKind.QUEUE:
        return FormField(control="select", options=tuple((q, q) for q in queues), **common)
    if argument.kind is ArgKind.STATUS:
        options = tuple((s.value, status_words.get(s, s.value)) for s in statuses)
        return FormField(control="select", options=options, **common)
    if argument.kind is ArgKind.TEXT:  # a datalist only serves one-line inputs
        return FormField(control="textarea", **common)
    suggestions = await suggestions_for(spec, argument, ticket, language)
    return FormField(control="input", suggestions=suggestions, **common)


async def suggestions_for(
    spec: ActionSpec, argument: Argument, ticket: int | None, language: str
) -> tuple[str, ...]:
    """What `argument` suggests on this ticket (at most `MAX_SUGGESTIONS`, without repeats,
    in its order); () when it suggests nothing or its `suggest` failed (logged)."""
    if argument.suggest is None:
        return ()
    try:
        found = await argument.suggest(ticket, language)
        values = [str(value) for value in found or ()]
    except Exception:
        log.exception("the suggestions for %s %s failed", spec.name, argument.name)
        return ()
    return tuple(dict.fromkeys(value for value in values if value.strip()))[:MAX_SUGGESTIONS]


__all__ = [
    "FIELD_KINDS",
    "ActionForm",
    "FormField",
    "action_forms",
    "generated_actions",
    "suggestions_for",
]
