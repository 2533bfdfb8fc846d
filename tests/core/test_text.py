"""The one render function for mail text: trimming quotes, signatures, blank runs, length."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from exobot.core import text as text_module
from exobot.core.text import format_size, mail_text, one_line


def test_none_and_empty() -> None:
    assert mail_text(None) == ""
    assert mail_text("") == ""
    assert mail_text("   \n \n") == ""


def test_newlines_and_trailing_whitespace_are_normalised() -> None:
    assert mail_text("Hola  \r\nbon dia\t\rAdéu \n") == "Hola\nbon dia\nAdéu"


def test_control_characters_are_dropped() -> None:
    assert mail_text("a\x00b\x1bc\u202ed") == "abcd"
    assert mail_text("a\x80b\x9bc\x7fd\x1fe") == "abcde"  # C1, DEL, unit separator


def test_other_line_breaks_are_line_breaks() -> None:
    # Chat clients and some mail software break lines at these: shown as "\n" (a quote or
    # a signature behind one is recognised as such).
    assert mail_text("a\u2028b\u2029c\x85d\x0be\x0cf") == "a\nb\nc\nd\ne\nf"
    assert mail_text("Hola\u2028-- \u2028Pere, 600 123 456") == "Hola"
    assert one_line("a\u2028b\x85c", 20) == "a b c"


def test_invisible_characters_are_dropped_and_joiners_kept() -> None:
    assert mail_text("sup\u200bort#3 \u2066x\u2069 \ufeffy\u00adz \u200eok\u200f") == (
        "suport#3 x yz ok"
    )
    family = "👨\u200d👩\u200d👧 می\u200cخواهم"  # ZWJ and ZWNJ are part of the text
    assert mail_text(family) == family
    assert one_line("a\u200b\u061cb", 20) == "ab"


def test_blank_runs_collapse_and_edges_are_trimmed() -> None:
    assert mail_text("\n\nHola\n\n\n\n\nAdéu\n\n\n") == "Hola\n\nAdéu"


def test_trailing_quote_is_trimmed() -> None:
    body = "No em funciona.\n\n> Hem rebut la vostra petició\n> suport#3\n>\n"
    assert mail_text(body) == "No em funciona."


def test_inline_quotes_are_kept() -> None:
    body = "> Quin router tens?\nUn TP-Link.\n> I l'antena?\nUna NanoStation."
    assert mail_text(body) == body


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, 6 May 2024 at 10:00, Suport eXO <suport@example.org> wrote:",
        "El dl., 6 de maig 2024 a les 10:00, Suport eXO <suport@example.org> va escriure:",
        "El lun, 6 may 2024 a las 10:00, Suport eXO (<suport@example.org>) escribió:",
        "-----Original Message-----",
        "-----Mensaje original-----",
        "----- Missatge original -----",
    ],
)
def test_reply_headers_cut_the_rest(header: str) -> None:
    body = f"Ja funciona, gràcies!\n\n{header}\nHem rebut la vostra petició.\nSalutacions\n"
    assert mail_text(body) == "Ja funciona, gràcies!"


def test_wrapped_gmail_attribution() -> None:
    body = (
        "Encara no va.\n\nOn Mon, 6 May 2024 at 10:00, Suport eXO <\n"
        "suport@example.org> wrote:\n\n> Hola\n"
    )
    assert mail_text(body) == "Encara no va."


def test_outlook_block_is_cut() -> None:
    body = (
        "Adjunto la factura.\n\n________________________________\n"
        "From: Suport eXO <suport@example.org>\nSent: Monday, May 6, 2024 10:00\n"
        "To: anna@example.org\nSubject: [suport#3] Alta\n\nHola Anna,\n"
    )
    assert mail_text(body) == "Adjunto la factura."


def test_outlook_block_in_spanish() -> None:
    body = "Gracias.\n\nDe: Suport eXO\nEnviado el: lunes, 6 de mayo\nPara: x\n\nHola"
    assert mail_text(body) == "Gracias."


def test_a_line_starting_with_from_alone_is_kept() -> None:
    body = "From: my flat the signal is weak.\nIt drops at night."
    assert mail_text(body) == body


def test_header_at_the_very_top_keeps_the_text() -> None:
    # Nothing above the header: better show the quoted mail than nothing at all.
    body = "-----Original Message-----\nHola"
    assert "Hola" in mail_text(body)


def test_signature_after_dash_dash_space() -> None:
    body = "No tinc connexió.\n\n-- \nAnna Puig\nTel. 600 000 000\n"
    assert mail_text(body) == "No tinc connexió."


def test_dash_dash_without_space_is_not_a_signature() -> None:
    assert mail_text("a\n--\nb") == "a\n--\nb"


def test_signature_and_quote_together() -> None:
    body = "Ja va!\n-- \nAnna\n\nEl dl. Suport eXO va escriure:\n> Hola\n"
    assert mail_text(body) == "Ja va!"


def test_max_lines_adds_ellipsis() -> None:
    body = "\n".join(f"línia {n}" for n in range(1, 11))
    assert mail_text(body, max_lines=3) == "línia 1\nlínia 2\nlínia 3…"
    assert mail_text(body, max_lines=10) == body


def test_max_lines_does_not_end_on_a_blank_line() -> None:
    assert mail_text("a\n\nb\nc", max_lines=2) == "a…"


def test_max_chars_adds_ellipsis_and_respects_the_limit() -> None:
    body = "paraula " * 100
    result = mail_text(body, max_chars=50)
    assert len(result) <= 50
    assert result.endswith("…")
    assert mail_text("curt", max_chars=50) == "curt"


def test_max_chars_and_max_lines_together() -> None:
    body = "\n".join("x" * 40 for _ in range(10))
    result = mail_text(body, max_lines=3, max_chars=60)
    assert len(result) <= 60
    assert result.endswith("…")


def test_text_is_not_escaped() -> None:
    assert mail_text("<b>hola</b> & @room") == "<b>hola</b> & @room"


def test_one_line() -> None:
    assert one_line("  a\n b\t\tc  ", 100) == "a b c"
    assert one_line("", 10) == ""
    assert one_line(None, 10) == ""
    long = one_line("paraula " * 20, 30)
    assert len(long) <= 30 and long.endswith("…")
    assert one_line("abcdefghij", 5) == "abcd…"


def test_core_text_imports_no_io() -> None:
    tree = ast.parse(Path(text_module.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= {"__future__", "html", "re", "unicodedata"}  # pure, no I/O


@pytest.mark.parametrize(
    ("size", "language", "shown"),
    [
        (25 * 1024**2, "ca", "25 MB"),
        (int(30.5 * 1024**2), "ca", "30,5 MB"),
        (int(30.5 * 1024**2), "en", "30.5 MB"),
        (1024**3, "es", "1 GB"),
        (64 * 1024, "en", "64 KB"),
    ],
)
def test_sizes_are_shown_in_the_readers_way(size: int, language: str, shown: str) -> None:
    assert format_size(size, language) == shown
