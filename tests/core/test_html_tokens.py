"""The linear HTML tokenizer shared by mail HTML and a volunteer's Matrix HTML: what it yields,
what it skips, that it never rescans, and that it stays pure."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from exobot.core import html_tokens as tokens_module
from exobot.core.html_tokens import html_tokens

HIDDEN = frozenset({"script", "style", "mx-reply"})


@pytest.mark.parametrize(
    ("source", "tokens"),
    [
        ("", []),
        ("just text &amp; more", ["just text &amp; more"]),
        (
            '<P Class="x">Hola <A HREF="https://exo.cat/?a=1&amp;b=2">exo</a></p>',
            [
                ("p", False, ' Class="x"'),
                "Hola ",
                ("a", False, ' HREF="https://exo.cat/?a=1&amp;b=2"'),
                "exo",
                ("a", True, ""),
                ("p", True, ""),
            ],
        ),
        (
            "<br/><x:y a=1>t</x:y >",
            [("br", False, "/"), ("x:y", False, " a=1"), "t", ("x:y", True, " ")],
        ),
        # Whatever opens no whole tag is text, stray "<" and ">" included.
        ("a < b > c <1> <a href='x' <b>", ["a < b > c <1> <a href='x' ", ("b", False, "")]),
        # Comments and declarations are skipped; an unclosed comment hides the rest.
        ("<!DOCTYPE html><?xml v?>a<!-- <b> -->b<!x", ["a", "b"]),
        ("a<!-- never closed <b>x</b>", ["a"]),
        # Hidden elements go with their content, up to their end tag in any case (its ">" may be
        # missing), or to the end when it is missing; their stray end tags are tags.
        ("a<script>x<b>y</b></SCRIPT >b", ["a", "b"]),
        ("a<style>p{}</style<b>c", ["a", ("b", False, ""), "c"]),
        ("<mx-reply><a href='r'>quoted</a></mx-reply>reply", ["reply"]),
        ("a<script>never closed <b>", ["a"]),
        ("a</script>b", ["a", ("script", True, ""), "b"]),
        ("<scripts>x</scripts>", [("scripts", False, ""), "x", ("scripts", True, "")]),
    ],
)
def test_text_runs_and_tags_in_order(source: str, tokens: list[object]) -> None:
    assert list(html_tokens(source, HIDDEN)) == tokens


def test_nothing_is_hidden_unless_asked() -> None:
    assert list(html_tokens("<script>x</script>")) == [
        ("script", False, ""),
        "x",
        ("script", True, ""),
    ]


def test_a_reader_may_stop_early() -> None:
    reader = html_tokens("a<b>" + "<x>" * 1000, HIDDEN)
    assert next(reader) == "a"
    assert next(reader) == ("b", False, "")
    reader.close()


@pytest.mark.parametrize(
    ("hostile", "tokens"),
    [
        ("<a href='x' " * 5000, ["<a href='x' " * 5000]),
        ("<x" * 30_000, ["<x" * 30_000]),
        ("<!--" * 15_000, []),
        ("<script>" * 10_000, []),
    ],
)
def test_hostile_input_is_searched_once_not_from_every_lt(
    hostile: str, tokens: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tokenizer that retried from every "<" would search thousands of times, each to the end.
    searches = []
    pattern = tokens_module._TOKEN

    class Counting:
        def search(self, source: str, position: int) -> re.Match[str] | None:
            searches.append(position)
            return pattern.search(source, position)

    monkeypatch.setattr(tokens_module, "_TOKEN", Counting())
    assert list(html_tokens(hostile, HIDDEN)) == tokens
    assert len(searches) == 1


def test_core_html_tokens_imports_no_io() -> None:
    tree = ast.parse(Path(tokens_module.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= {"__future__", "collections", "functools", "re"}  # pure, no I/O
