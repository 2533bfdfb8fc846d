"""Tests for exobot.mail.compose: member-facing templates and safe outbound messages."""

import email
import email.errors
from datetime import UTC, datetime, timedelta, timezone
from email import policy

import jinja2
import pytest

from exobot.mail.compose import (
    MAX_REFERENCES,
    TemplateRenderer,
    build_message,
    header_safe,
)

VARIABLES = {
    "reference": "suport#12",
    "number": 12,
    "title": "No tinc connexió",
    "text": "Prova de reiniciar el router.\n",
    "display_name": "Suport eXO",
    "requestor": "membre@example.org",
}
# Outlook-style ids are longer than a folded header line, which is what used to break them.
LONG_ID = "<DB9PR10MB5643C2A3F1B1E7E4C2B7A3D9E8C12@DB9PR10MB5643.EURPRD10.PROD.OUTLOOK.COM>"
INJECTION = "hola\r\nBcc: evil@x.org"
# The same line break hidden in an RFC 2047 encoded-word, which the header registry decodes.
ENCODED_INJECTION = "=?utf-8?q?hola=0D=0ABcc:_evil@x.org?="


def make(**overrides):
    kwargs = {
        "from_address": "suport@exo.cat",
        "from_name": "Suport eXO",
        "to": ["membre@example.org"],
        "subject_tag": "suport#12",
        "title": "No tinc connexió",
        "body": "Hola,\nja funciona.\n",
        "message_id": "<suport-12-3@exo.cat>",
        "loop_marker": "exobot-7f3a",
        "date": datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
    }
    kwargs.update(overrides)
    return build_message(**kwargs)


def roundtrip(msg):
    raw = msg.as_bytes()
    return raw, email.message_from_bytes(raw, policy=policy.default)


# --- templates ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["ca", "es", "en"])
@pytest.mark.parametrize("name", ["ack", "reply", "resolved"])
def test_every_template_renders_with_reference(name, language):
    text = TemplateRenderer().render(name, language, **VARIABLES)
    assert "suport#12" in text
    assert "Suport eXO" in text
    assert text.endswith("\n") and not text.endswith("\n\n")


@pytest.mark.parametrize("language", ["ca", "es", "en"])
def test_ack_warns_about_sensitive_data(language):
    text = TemplateRenderer(language).render("ack", **VARIABLES)
    assert "IBAN" in text
    assert "[suport#12]" in text


def test_catalan_is_the_default_language():
    text = TemplateRenderer().render("ack", **VARIABLES)
    assert "tiquet de suport 12" in text
    assert "«No tinc connexió»" in text


def test_reply_contains_the_volunteer_text_and_signature():
    text = TemplateRenderer().render("reply", **VARIABLES)
    assert text.startswith("Prova de reiniciar el router.\n\n-- \n")


def test_override_dir_wins_and_falls_back_per_file(tmp_path):
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ack.txt.j2").write_text("Rebut: {{ reference }}\n", encoding="utf-8")
    renderer = TemplateRenderer(override_dir=tmp_path)
    assert renderer.render("ack", **VARIABLES) == "Rebut: suport#12\n"
    # Not overridden: the packaged templates are still used.
    assert "IBAN" in renderer.render("ack", "es", **VARIABLES)
    assert "suport#12" in renderer.render("resolved", **VARIABLES)


def test_missing_variable_raises():
    variables = dict(VARIABLES)
    del variables["reference"]
    with pytest.raises(jinja2.UndefinedError):
        TemplateRenderer().render("ack", **variables)


def test_typo_in_override_raises(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "reply.txt.j2").write_text("{{ refrence }}", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError):
        TemplateRenderer("en", override_dir=tmp_path).render("reply", **VARIABLES)


def test_optional_title_may_be_empty():
    text = TemplateRenderer().render("resolved", **{**VARIABLES, "title": ""})
    assert "«" not in text


def test_unknown_language_or_template_raises():
    with pytest.raises(ValueError):
        TemplateRenderer("fr")
    with pytest.raises(ValueError):
        TemplateRenderer().render("ack", "fr", **VARIABLES)
    with pytest.raises(ValueError):
        TemplateRenderer().render("../ca/ack", **VARIABLES)


# --- header_safe ---------------------------------------------------------------------------


def test_header_safe_collapses_control_characters():
    assert header_safe("  hola\r\n\tBcc:\x00 evil\u2028x  ") == "hola Bcc: evil x"


def test_header_safe_truncates_with_ellipsis():
    result = header_safe("a" * 300, limit=50)
    assert len(result) == 50
    assert result.endswith("…")
    assert header_safe("curt", limit=4) == "curt"


# --- build_message -------------------------------------------------------------------------


def test_message_has_exactly_the_expected_headers():
    raw, parsed = roundtrip(make(in_reply_to="<a@example.org>"))
    assert sorted(parsed.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "In-Reply-To",
            "References",
            "X-Exobot-Loop",
            "Content-Language",
            "Content-Type",
            "Content-Transfer-Encoding",
            "MIME-Version",
        ]
    )
    assert parsed["Message-ID"] == "<suport-12-3@exo.cat>"
    assert parsed["X-Exobot-Loop"] == "exobot-7f3a"
    assert parsed["Content-Language"] == "ca"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed["Date"].datetime == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert str(parsed["From"]) == "Suport eXO <suport@exo.cat>"
    assert parsed["Subject"] == "[suport#12] No tinc connexió"


def test_serialization_uses_crlf_and_short_lines():
    raw, _ = roundtrip(make(title="Títol " * 80, references=[LONG_ID]))
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78 + len(LONG_ID)
    assert raw.isascii()


def test_header_injection_in_title_and_names_is_neutralised():
    raw, parsed = roundtrip(make(title=INJECTION, from_name=INJECTION))
    assert "Bcc" not in parsed
    assert b"\r\nBcc:" not in raw and b"\nBcc:" not in raw
    assert parsed["Subject"] == "[suport#12] hola Bcc: evil@x.org"
    assert parsed["From"].addresses[0].display_name == "hola Bcc: evil@x.org"
    assert parsed["From"].addresses[0].addr_spec == "suport@exo.cat"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["membre@example.org"]


def test_encoded_word_injection_in_title_and_names_is_neutralised():
    raw, parsed = roundtrip(make(title=ENCODED_INJECTION, from_name=ENCODED_INJECTION))
    assert "Bcc" not in parsed
    assert b"\nBcc:" not in raw
    # The member's text, as they wrote it: never decoded a second time.
    assert parsed["Subject"] == f"[suport#12] {ENCODED_INJECTION}"
    assert parsed["From"].addresses[0].addr_spec == "suport@exo.cat"


@pytest.mark.parametrize(
    "title",
    [
        "=?utf-8?q?hola_m=C3=B3n?= i més",  # an encoded-word written out, as the member did
        "=?utf-8?b?4oCuZ25wLmV4ZQ==?=",  # one that would decode to a bidi override
        "Re: =?iso-8859-1?q?caf=E9?=",
    ],
)
def test_a_subject_holding_an_encoded_word_is_sent_as_written(title):
    # The parser decoded the member's subject once; what is left is their text.
    raw, parsed = roundtrip(make(title=title))
    assert parsed["Subject"] == f"[suport#12] {title}"
    assert title.encode() not in raw  # encoded, so no client decodes it either


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("factura\u202egnp.exe", "facturagnp.exe"),  # right-to-left override
        ("sup\u200bort\u2066#3\u2069 \ufeffok\u00ad", "suport#3 ok"),
        ("Família 👨\u200d👩\u200d👧", "Família 👨\u200d👩\u200d👧"),  # ZWJ sequences stay
    ],
)
def test_invisible_characters_leave_subjects_and_names(title, shown):
    _raw, parsed = roundtrip(make(title=title, from_name=title))
    assert parsed["Subject"] == f"[suport#12] {shown}"
    assert parsed["From"].addresses[0].display_name == shown


def test_headers_added_by_the_caller_cannot_inject_either():
    msg = make()
    msg["X-Note"] = ENCODED_INJECTION
    try:
        raw = msg.as_bytes()
    except (ValueError, email.errors.MessageError):
        return  # refused: what this Python does
    assert "Bcc" not in email.message_from_bytes(raw, policy=policy.default)


def test_display_name_cannot_smuggle_an_address():
    _, parsed = roundtrip(make(from_name="Núria <evil@x.org>, other@y.org"))
    (address,) = parsed["From"].addresses
    assert address.addr_spec == "suport@exo.cat"
    assert address.display_name == "Núria <evil@x.org>, other@y.org"


@pytest.mark.parametrize(
    "field, value",
    [
        ("to", [INJECTION]),
        ("to", ["membre@example.org\r\nBcc: evil@x.org"]),
        ("to", ["Nom\r\nBcc: evil@x.org <membre@example.org>"]),
        ("cc", ["evil@x.org\nBcc: y@z.org"]),
        ("from_address", "suport@exo.cat\r\nBcc: evil@x.org"),
        ("message_id", "<a@b>\r\nBcc: evil@x.org"),
        ("in_reply_to", "<a@b>\r\nBcc: evil@x.org"),
        ("references", ["<a@b>\nBcc: evil@x.org"]),
        ("loop_marker", "exobot\r\nBcc: evil@x.org"),
        ("subject_tag", "suport#12\r\nBcc: evil@x.org"),
        ("language", "ca\r\nBcc: evil@x.org"),
        ("message_id", "<=?utf-8?q?a=0D=0ABcc:_x?=@exo.cat>"),
        ("in_reply_to", "<=?utf-8?q?a=0D=0ABcc:_x?=@exo.cat>"),
        ("references", ["<=?utf-8?q?a=0D=0ABcc:_x?=@exo.cat>"]),
        ("loop_marker", ENCODED_INJECTION),
        ("subject_tag", ENCODED_INJECTION),
    ],
)
def test_header_injection_in_validated_fields_raises(field, value):
    with pytest.raises(ValueError):
        make(**{field: value})


@pytest.mark.parametrize(
    "address",
    [
        "",
        "membre",
        "membre@",
        "@example.org",
        "mem bre@example.org",
        "a@b.org, c@d.org",
        "membre@exa mple.org",
        "membre@-example.org",
    ],
)
def test_invalid_address_raises(address):
    with pytest.raises(ValueError):
        make(to=[address])
    with pytest.raises(ValueError):
        make(cc=[address])


def test_invalid_from_address_raises():
    with pytest.raises(ValueError):
        make(from_address="Suport <suport@exo.cat>")


def test_empty_recipient_list_raises():
    with pytest.raises(ValueError):
        make(to=[])


def test_recipients_with_display_names_and_cc():
    _, parsed = roundtrip(
        make(to=["Jordi Pujol i Soler <jordi@example.org>"], cc=["voluntaris@exo.cat"])
    )
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Jordi Pujol i Soler", "jordi@example.org")
    assert [a.addr_spec for a in parsed["Cc"].addresses] == ["voluntaris@exo.cat"]


@pytest.mark.parametrize("message_id", ["suport-12@exo.cat", "<suport-12>", "<a@b@c>", "<a b@c>"])
def test_invalid_message_id_raises(message_id):
    with pytest.raises(ValueError):
        make(message_id=message_id)


@pytest.mark.parametrize(
    "title",
    ["No tinc connexió", "Re: [suport#12] No tinc connexió", "RE: [Suport#12] No tinc connexió"],
)
def test_subject_tag_is_not_duplicated(title):
    _, parsed = roundtrip(make(title=title))
    assert parsed["Subject"].lower().count("[suport#12]") == 1
    assert parsed["Subject"].endswith("No tinc connexió")


def test_other_ticket_tag_in_title_still_gets_ours():
    _, parsed = roundtrip(make(title="[suport#1] Antena"))
    assert parsed["Subject"] == "[suport#12] [suport#1] Antena"


def test_references_chain_is_deduplicated_and_ends_with_parent():
    _, parsed = roundtrip(
        make(references=["<a@x>", "<c@x>", "<a@x>", "<b@x>", "<d@x>"], in_reply_to="<b@x>")
    )
    assert parsed["In-Reply-To"] == "<b@x>"
    # <d@x> came after the parent: no ancestor of it, so not listed before it.
    assert parsed["References"].split() == ["<a@x>", "<c@x>", "<b@x>"]


def test_references_chain_is_capped_to_the_root_and_the_most_recent():
    references = [f"<{i}@x>" for i in range(30)]
    _, parsed = roundtrip(make(references=references, in_reply_to="<parent@x>"))
    chain = parsed["References"].split()
    assert len(chain) == MAX_REFERENCES
    assert chain == [references[0], *references[-(MAX_REFERENCES - 2) :], "<parent@x>"]


def test_no_threading_headers_for_a_new_thread():
    _, parsed = roundtrip(make())
    assert "In-Reply-To" not in parsed
    assert "References" not in parsed


def test_long_message_ids_are_not_encoded():
    raw, parsed = roundtrip(make(in_reply_to=LONG_ID, references=["<a@x>", LONG_ID]))
    threading = [line for line in raw.split(b"\r\n") if b"@" in line and b"=?" in line]
    assert threading == []
    assert parsed["In-Reply-To"] == LONG_ID
    assert parsed["References"].split() == ["<a@x>", LONG_ID]


def test_auto_submitted_only_for_automatic_mail():
    assert "Auto-Submitted" not in roundtrip(make())[1]
    assert roundtrip(make(auto_submitted=True))[1]["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize(
    "title",
    [
        "Avaria a la Vall d'Aran: l·l, ç, à, è, é, í, ï, ò, ó, ú, ü",
        "Col·lectiu de l'Escola Pública Pau Casals — connexió intermitent al pavelló "
        "poliesportiu i a la biblioteca, també a les antenes del turó de Sant Llorenç",
        # Words around the encoded part used to be glued together (cpython gh-144156).
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx à, d'Aran: è (wifi) Güell — à, «antena» è",
        "El router (wifi) no va 😀 e\u0301 日本語 i l'antena tampoc",
        "Re: [suport#12] Què passa amb la línia?",
    ],
)
def test_non_ascii_title_survives_encoding(title):
    raw, parsed = roundtrip(make(title=title))
    assert raw.isascii()
    assert parsed["Subject"].removeprefix("[suport#12] ") == title
    headers = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert max(len(line) for line in headers if not line.startswith(b"Message-ID")) <= 78


def test_non_ascii_names_and_body_survive_encoding():
    body = "Hola Núria,\n\nla línia de Sant Martí Sesgueioles ja funciona · l·l\n" + "x" * 300
    _, parsed = roundtrip(
        make(from_name="Suport eXO · Col·lectiu", to=["Núria Güell <nuria@example.org>"], body=body)
    )
    assert parsed["From"].addresses[0].display_name == "Suport eXO · Col·lectiu"
    assert parsed["To"].addresses[0].display_name == "Núria Güell"
    assert parsed.get_content().replace("\r\n", "\n") == body + "\n"


def test_date_keeps_the_timezone_and_must_be_aware():
    cet = timezone(timedelta(hours=2))
    _, parsed = roundtrip(make(date=datetime(2024, 5, 1, 12, 30, tzinfo=cet)))
    assert parsed["Date"].datetime.utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError):
        make(date=datetime(2024, 5, 1, 12, 30))


def test_default_date_is_now():
    _, parsed = roundtrip(make(date=None))
    assert abs(parsed["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)


# --- greeting and the first answer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "greeting"),
    [("ca", "Hola, Anna Puig,\n"), ("es", "Hola, Anna Puig:\n"), ("en", "Hello Anna Puig,\n")],
)
@pytest.mark.parametrize("name", ["ack", "advice", "resolved"])
def test_a_known_name_is_greeted(name, language, greeting):
    text = TemplateRenderer().render(name, language, **VARIABLES, member_name="Anna Puig", advice="")
    assert text.startswith(greeting)


@pytest.mark.parametrize(
    ("language", "greeting"), [("ca", "Hola,\n"), ("es", "Hola:\n"), ("en", "Hello,\n")]
)
def test_without_a_name_the_greeting_is_plain(language, greeting):
    text = TemplateRenderer().render("ack", language, **VARIABLES, member_name=None)
    assert text.startswith(greeting)


def test_the_ack_says_when_a_first_answer_can_be_expected():
    sentence = "Normalment responem en dos dies feiners."
    text = TemplateRenderer().render("ack", "ca", **VARIABLES, first_answer=sentence)
    assert f"tan aviat com pugui. {sentence} Si vols" in text


@pytest.mark.parametrize("name", ["ack", "advice", "reply", "resolved"])
def test_catalan_mails_say_tiquet(name):
    text = TemplateRenderer().render(name, "ca", **VARIABLES, advice="")
    assert "tiquet de suport 12" in text
    assert "ticket" not in text.lower()
