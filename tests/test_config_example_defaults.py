"""config.yaml.example says "Commented-out keys show their default value": every commented
key either shows the default (uncommenting it changes nothing) or is marked "(example)".
An administrator who reads `legacy_tags: ["eXO"]` as the default expects replies to
"[eXO #310]" to thread, and they would open new tickets instead."""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from exobot import config as config_module
from exobot.config import Config, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "config.yaml.example"
MARK = "(example)"
# What the keys are checked against: the least a configuration needs, Matrix included.
BASE: dict[str, Any] = {
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "imap-pw"},
        "smtp": {"host": "smtp.example.org"},
    },
    "matrix": {
        "homeserver": "https://matrix.example.org",
        "user_id": "@exobot:example.org",
        "password": "matrix-pw",
    },
}
# Keys whose shown value is the default in effect, though not the field's own default.
SAME_IN_EFFECT = {"tickets.first_number"}  # None: the first ticket is number 1
_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*):(\s|$)")
_COMMENTED = re.compile(r"^(\s*)# ?(\s*)(.*)$")


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch):
    """The core's configuration alone (tests/plugins/ checks a plugin's settings)."""
    monkeypatch.setattr(config_module, "KNOWN_PLUGINS", set())
    monkeypatch.setattr(config_module, "_installed_plugins", dict)


def _field(path: list[str]) -> Any:
    """The annotation of the Config field at `path`, None when there is no such field (the
    line is prose that happens to start with a word and a colon)."""
    annotation: Any = Config
    for part in path:
        models = [a for a in (annotation, *typing.get_args(annotation)) if _is_model(a)]
        mappings = [a for a in (annotation, *typing.get_args(annotation)) if _is_dict(a)]
        if models and part in models[0].model_fields:
            annotation = models[0].model_fields[part].annotation
        elif mappings and typing.get_args(mappings[0]):  # dict[name, section]: any name
            annotation = typing.get_args(mappings[0])[1]
        else:
            return None
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_dict(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def commented_keys(text: str) -> list[tuple[int, list[str], str]]:
    """(line number, dotted path, the key's text) of each commented-out key; a commented line
    sits at the indentation of its `#` plus that after "# " ("  # key:" and "#   key:" are
    both at 2)."""
    found = []
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        commented = _COMMENTED.match(line)
        if commented:
            key = _KEY.match(commented[3])
            indent = len(commented[1]) + len(commented[2])
        else:
            key = _KEY.match(line)
            indent = len(key[1]) if key else 0
        if key is None:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [name for _, name in stack] + [key[2]]
        stack.append((indent, key[2]))
        if commented:
            found.append((number, path, commented[3]))
    return found


def _is_section(annotation: Any) -> bool:
    """Whether the field is a section (its keys are checked one by one), `X | None` too."""
    return any(_is_model(a) for a in (annotation, *typing.get_args(annotation)))


def _parent(data: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The mapping that holds the key at `path`, made (empty) where missing."""
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    return node


def shown_not_default(text: str) -> list[str]:
    """The commented keys, not marked (example), whose value is not the default: uncommented,
    the configuration differs from the one without them (or is refused)."""
    wrong = []
    for number, path, line in commented_keys(text):
        annotation = _field(path)
        if MARK in line or annotation is None or _is_section(annotation):
            continue
        if ".".join(path) in SAME_IN_EFFECT:
            continue
        value = yaml.safe_load(line)[path[-1]]
        without = copy.deepcopy(BASE)
        _parent(without, path)  # the key's sections there, empty: a section alone may count
        with_key = copy.deepcopy(without)
        _parent(with_key, path)[path[-1]] = value
        try:
            same = parse_config(with_key, env={}) == parse_config(without, env={})
        except config_module.ConfigError as error:
            same, why = False, f" (refused: {error})"
        else:
            why = ""
        if not same:
            wrong.append(f"config.yaml.example:{number}: {'.'.join(path)}{why}")
    return wrong


def test_the_example_says_what_a_commented_key_shows() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "Commented-out keys show their default value" in text
    assert f"except those marked {MARK}" in text


def test_every_commented_key_shows_its_default_or_is_marked_an_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = {".".join(path) for _, path, _ in commented_keys(text)}
    # The check reaches the keys it is about (not a parser that found nothing).
    assert {"tickets.legacy_tags", "mail.form_senders", "metrics.listen", "logging.level"} <= keys
    assert shown_not_default(text) == []


def test_the_check_catches_an_unmarked_example() -> None:
    text = "tickets:\n  # legacy_tags: [eXO]\n  # prefix: suport\n"
    assert shown_not_default(text) == ["config.yaml.example:2: tickets.legacy_tags"]
    assert shown_not_default(text.replace("[eXO]", f"[eXO]  # {MARK}")) == []
