"""Reading what operators type, and the settings: the `!procedure` line with every type's
words (case and accents ignored), a join without a member, the refusals (unknown type,
missing member or service), P-N references (a bare number refused: it is a ticket), the
`!procedures` filter, the sensitive-note check, the CSV export with line-numbered problems,
and the settings' checks."""

from __future__ import annotations

import pytest
from exobot_procedures.config import ProceduresConfig, default_types, fold
from exobot_procedures.members import read_members_csv
from exobot_procedures.plugin import Procedures
from exobot_procedures.procedures import (
    ListFilter,
    ParsedProcedure,
    ParseError,
    find_type,
    parse_filter,
    parse_procedure,
    parse_ref,
    sensitive_in,
    split_ref,
    type_words,
)
from exobot_procedures.store import MemberRow
from procedures_settings import MINIMAL

from exobot.config import ConfigError, parse_config
from exobot.plugins import installed

CONFIG = ProceduresConfig()


def test_the_entry_point_and_aliases():
    assert installed()["procedures"].cls is Procedures
    assert Procedures.cli_aliases == ("members",)


@pytest.mark.parametrize(
    ("word", "name"),
    [
        ("join", "join"), ("alta", "join"), ("ALTA", "join"),
        ("leave", "leave"), ("baixa", "leave"), ("baja", "leave"),
        ("email", "email"), ("correu", "email"), ("bank", "bank"), ("banc", "bank"),
        ("service-add", "service-add"), ("servei-alta", "service-add"),
        ("service-remove", "service-remove"), ("Servei-Baixa", "service-remove"),
        ("nope", None),
    ],
)
def test_type_words(word, name):
    assert find_type(CONFIG, word) == name


def test_fold_ignores_case_and_accents():
    assert fold("Tràmit") == "tramit" and fold("Anul·la") == "anulla"


def test_the_procedure_line():
    assert parse_procedure(CONFIG, "banc 1234 dades a l'eina de gestió, soci 1234") == (
        ParsedProcedure("bank", "1234", None, "dades a l'eina de gestió, soci 1234")
    )
    assert parse_procedure(CONFIG, "servei-alta 1234 FTTH-77 alta de fibra\nsegona línia") == (
        ParsedProcedure("service-add", "1234", "FTTH-77", "alta de fibra\nsegona línia")
    )
    # A join may leave the member out (the requestor's address is used), or give a new one.
    assert parse_procedure(CONFIG, "alta vol fer-se sòcia") == (
        ParsedProcedure("join", None, None, "vol fer-se sòcia")
    )
    assert parse_procedure(CONFIG, "join 987") == ParsedProcedure("join", "987", None, "")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "missing_type"),
        ("hipoteca 12", "unknown_type"),
        ("baixa", "missing_member"),
        ("banc soci-1234", "bad_member"),
        ("servei-baixa 1234", "missing_service"),
        ("servei-baixa 1234 " + "x" * 201, "service_too_long"),
    ],
)
def test_the_procedure_line_refused(text, code):
    with pytest.raises(ParseError) as caught:
        parse_procedure(CONFIG, text)
    assert caught.value.code == code


def test_references():
    assert parse_ref("P-12") == 12 and parse_ref("p-3,") == 3 and parse_ref("P7") == 7
    for text, code in [("12", "bare_number"), ("#12", "bare_number"), ("P-0", "bad_ref"),
                       ("suport#12", "bad_ref"), ("P-x", "bad_ref")]:
        with pytest.raises(ParseError) as caught:
            parse_ref(text)
        assert caught.value.code == code, text
    assert split_ref("P-4 rebut el mandat\nsignat") == (4, "rebut el mandat\nsignat")
    with pytest.raises(ParseError, match="missing_ref"):
        split_ref("   ")


def test_the_list_filter():
    assert parse_filter(CONFIG, "", "suport") == ListFilter()
    assert parse_filter(CONFIG, "Pendents", "suport") == ListFilter()
    assert parse_filter(CONFIG, "tots", "suport") == ListFilter(state=None)
    assert parse_filter(CONFIG, "1234", "suport") == ListFilter(state=None, member="1234")
    assert parse_filter(CONFIG, "banc", "suport") == ListFilter(state=None, type="bank")
    assert parse_filter(CONFIG, "suport#5", "suport") == ListFilter(state=None, ticket=5)
    with pytest.raises(ParseError, match="bad_filter"):
        parse_filter(CONFIG, "ahir", "suport")


def test_type_words_per_language():
    assert type_words(CONFIG, "ca") == [
        "alta", "baixa", "correu", "banc", "servei-alta", "servei-baixa"
    ]
    assert type_words(CONFIG, "en")[0] == "join"


def test_sensitive_notes():
    assert sensitive_in("IBAN ES91 2100 0418 4502 0005 1332, signat") == ["iban"]
    assert sensitive_in("targeta 4111 1111 1111 1111") == ["card"]
    assert sensitive_in("DNI 12345678Z i IBAN ES9121000418450200051332") == ["identity", "iban"]
    # References are fine, and look-alikes failing their checksum too.
    assert sensitive_in("dades a l'eina de gestió, soci 1234; mandat signat el 3 de març") == []
    assert sensitive_in("ES91 2100 0418 4502 0005 1333") == []


def csv_rows(text: str, **settings):
    config = ProceduresConfig(members_csv=settings) if settings else CONFIG
    return read_members_csv(text.encode(config.members_csv.encoding), config.members_csv, config)


def test_the_member_export():
    rows, problems = csv_rows(
        "\ufeffNumber,Email,Email2,Name\n"
        "1,Ona@Example.org,factures@example.org,Ona\n"
        "\n"
        '2,pau@example.org,,"Pau, the second"\n'
    )
    assert problems == []
    assert rows == [
        MemberRow("1", "ona@example.org", "factures@example.org", None),
        MemberRow("2", "pau@example.org", None, None),
    ]
    rows, problems = csv_rows(
        "soci;correu;actiu\n10;a@example.org;Sí\n11;b@example.org;no\n",
        number="soci", address="correu", address2=None, active="actiu", delimiter=";",
    )
    assert problems == [] and [(r.number, r.active) for r in rows] == [("10", True), ("11", False)]


def test_bad_rows_are_reported_with_their_line():
    rows, problems = csv_rows(
        "number,email,email2\n"
        "1,ona@example.org,\n"
        "x7,pau@example.org,\n"          # line 3: not a number
        '3,"not an address",\n'          # line 4
        "1,twice@example.org,\n"         # line 5: duplicate of line 2
        '4,"multi\nline@example.org",\n'  # lines 6-7: a quoted line break, refused
        "5,ok@example.org,bad@@x\n"      # line 8
    )
    assert [r.number for r in rows] == ["1"]
    assert [(p.line, p.code) for p in problems] == [
        (3, "bad_number"), (4, "bad_address"), (5, "duplicate"), (6, "bad_address"),
        (8, "bad_address"),
    ]
    assert problems[2].params == {"number": "1", "first": 2}
    _rows, problems = csv_rows("numero,correu\n1,a@example.org\n")
    assert [(p.line, p.code, p.params) for p in problems] == [
        (1, "missing_columns", {"columns": "number, email, email2"})
    ]
    assert [p.code for p in csv_rows("number,email,email2\n")[1]] == ["no_rows"]
    assert [p.code for p in csv_rows("")[1]] == ["no_header"]
    config = ProceduresConfig()
    _rows, problems = read_members_csv(b"number,email\n1,\xe9\n", config.members_csv, config)
    assert [p.code for p in problems] == ["not_text"]


def parse(settings: dict):
    return parse_config(MINIMAL | {"plugins": {"procedures": settings}}, env={})


def test_settings():
    config = ProceduresConfig()
    assert (config.queue, config.pending_after.days, list(config.types)) == (
        "tresoreria", 7, list(default_types())
    )
    parse({"pending_after": "3d", "members_csv": {"delimiter": ";", "active": "actiu"},
           "non_member_notice": {"ca": "Només socis."}})
    for settings, words in [
        ({"pending_after": "a week"}, "pending_after"),
        ({"member_pattern": "("}, "member_pattern"),
        ({"members_csv": {"encoding": "klingon"}}, "encoding"),
        ({"non_member_notice": {"fr": "x"}}, "non_member_notice"),
        ({"types": {"join": {"words": {"en": ["join"]}, "names": {"en": "j"}},
                    "again": {"words": {"ca": ["Join"]}, "names": {"en": "a"}}}}, "join"),
        ({"types": {"x": {"words": {"en": ["P-1"]}, "names": {"en": "x"}}}}, "reference"),
        ({"colour": "red"}, "colour"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse(settings)
        assert any(words in problem for problem in caught.value.problems), caught.value.problems
