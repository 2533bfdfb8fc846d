"""Words of a member's mail as exobot writes them back: a name given in capitals written as a
name (Catalan, Spanish, English names), and a subject without the reply and forward prefixes
mail clients piled up, in linear time however hostile the subject."""

from __future__ import annotations

import time

import pytest

from exobot.core.text import greeting_name, name_case, without_reply_prefixes


@pytest.mark.parametrize(
    ("given", "greeted"),
    [
        # Catalan: "i" joins the two surnames; "l·l" is inside a word (str.title: "Gil·La").
        ("NÚRIA COLL I GIL·LA", "Núria Coll i Gil·la"),
        ("MARIA DE L'ÀNGEL PUIG", "Maria de l'Àngel Puig"),
        ("JOAN D'ORS I MARTÍ", "Joan d'Ors i Martí"),
        ("JORDI PUIG DELS ARCS", "Jordi Puig dels Arcs"),
        # Spanish.
        ("JOSÉ DE LA PEÑA Y GARCÍA", "José de la Peña y García"),
        ("MARÍA DEL CARMEN LÓPEZ", "María del Carmen López"),
        ("PEÑA, JOSÉ", "José Peña"),  # a directory's order, turned round
        # English and others: a capital after a hyphen or an apostrophe.
        ("MARY O'BRIEN-SMITH", "Mary O'Brien-Smith"),
        ("JEAN-PIERRE VAN DER BERG", "Jean-Pierre van der Berg"),
        ("LUDWIG VON MISES", "Ludwig von Mises"),
        ("MARIA DA SILVA DOS SANTOS", "Maria da Silva dos Santos"),
        ("ANNA PUIG", "Anna Puig"),
    ],
)
def test_a_name_in_capitals_is_written_as_a_name(given: str, greeted: str) -> None:
    assert greeting_name(given) == greeted


def test_a_particle_that_begins_the_name_keeps_its_capital() -> None:
    assert name_case("DE LA FUENTE") == "De la Fuente"
    assert name_case("D'ORS") == "D'Ors"
    assert name_case("I") == "I"


def test_a_name_not_in_capitals_is_kept_as_written() -> None:
    assert greeting_name("Núria Coll i Gil·la") == "Núria Coll i Gil·la"
    assert greeting_name("josé de la Peña") == "josé de la Peña"
    # Written once, written again the same (the outbox worker greets with it again).
    once = greeting_name("NÚRIA COLL I GIL·LA")
    assert greeting_name(once) == once


@pytest.mark.parametrize(
    ("subject", "kept"),
    [
        ("RE: RE: FW: Alta de servei [Ticket#555]", "Alta de servei [Ticket#555]"),
        ("Re: Fwd: No tinc connexió", "No tinc connexió"),
        ("re:fw:RV: Enc: Consulta", "Consulta"),
        ("AW: WG: Frage", "Frage"),
        ("TR: R: Rif: SV: VS: hola", "hola"),
        ("Re[2]: Re(3): Factura", "Factura"),
        ("Re : Fw : Quota", "Quota"),
        ("RE：全角のコロン", "全角のコロン"),  # the full-width colon of CJK clients
        ("  Re:   Re:  dues", "dues"),
        # Not prefixes: a word that begins like one, one after the start, a word alone.
        ("Reunió: dijous", "Reunió: dijous"),
        ("Resposta del router", "Resposta del router"),
        ("Alta de servei (Re: la meva)", "Alta de servei (Re: la meva)"),
        ("Re", "Re"),
        ("Re:", ""),
        ("RE: RE:", ""),
    ],
)
def test_reply_and_forward_prefixes_are_taken_off(subject: str, kept: str) -> None:
    assert without_reply_prefixes(subject) == kept


@pytest.mark.parametrize(
    "hostile",
    [
        "re:" * 100_000,
        "Re: " * 100_000 + "x",
        "re " * 100_000,  # never a colon: nothing to take off
        "re" + " " * 100_000 + "x",
        "re[" + "1" * 100_000,
        "Re: " * 50_000 + "re" + "\t" * 100_000,
        "fw:" * 100_000 + "re",
    ],
)
def test_a_hostile_subject_costs_linear_time(hostile: str) -> None:
    # Linear, this takes milliseconds; a backtracking pattern over these shapes would take
    # minutes to hours. The bound only tells one from the other.
    started = time.monotonic()
    kept = without_reply_prefixes(hostile)
    assert time.monotonic() - started < 10
    assert hostile.endswith(kept)
    assert without_reply_prefixes(kept) == kept
