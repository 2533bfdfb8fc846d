"""The procedures' pages and ticket panel in process: the real web app with the plugin started
by the real PluginManager over a migrated SQLite database (web_world.py). Creating from the
panel (the ticket moves to tresoreria), a refusal shown in the panel with what was typed, the
list with its filters, count and paging, an unreadable date said (400, not 500), the
procedure's page with its history and done/cancel forms, the member's page, the CSV export
with formula cells escaped, CSRF (403) and the login redirect, and typed text escaped."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from exobot_procedures import csv_export, service, store
from markupsafe import escape
from web_world import TREASURER, web_world_fixture  # noqa: F401  (the fixture)

from exobot import i18n

IBAN = "ES91 2100 0418 4502 0005 1332"


def words(language: str, msgid: str, **params: object) -> str:
    """A message of the plugin's domain as an HTML page shows it (escaped)."""
    return str(escape(i18n.say(language, msgid, domain="procedures", **params)))


async def create(world, ticket: int, type: str = "bank", member: str | None = "1234", **kw):
    values = {"service": None, "note": "", "actor": TREASURER, "language": "ca"} | kw
    return await service.create_procedure(
        world.plugin, ticket=ticket, type=type, member=member, **values
    )


async def test_panel_creates_and_refuses_in_place(web_world):
    world = web_world
    number = await world.mail()
    page = await world.client.get(f"/tickets/{number}")
    assert page.status_code == 200
    assert 'id="procedures"' in page.text and words("ca", "No procedure on this ticket.") in page.text
    assert f'name="csrf" value="{world.csrf}"' in page.text  # the panel's forms carry it
    assert '<option value="service-add" >alta de servei</option>' in page.text

    # A refusal comes back on the ticket page (400), in the panel, with what was typed.
    typed = f"<b>mandat</b> {IBAN}"
    refused = await world.client.post(
        f"/plugins/procedures/tickets/{number}/create",
        data={"csrf": world.csrf, "type": "bank", "member": "1234", "note": typed},
    )
    assert refused.status_code == 400
    what = i18n.say("ca", "an IBAN", domain="procedures")
    assert 'id="pp-create-problem"' in refused.text
    assert words("ca", service.SENSITIVE, what=what) in refused.text
    assert "&lt;b&gt;mandat&lt;/b&gt;" in refused.text and "<b>mandat</b>" not in refused.text
    assert (await world.ticket(number)).queue == "suport"  # nothing happened
    refused = await world.client.post(
        f"/plugins/procedures/tickets/{number}/create",
        data={"csrf": world.csrf, "type": "service-add", "member": "1234", "note": ""},
    )
    assert refused.status_code == 400
    assert words("ca", "A {type} needs the service reference (SERVICE).",
                 type="alta de servei") in refused.text

    created = await world.client.post(
        f"/plugins/procedures/tickets/{number}/create",
        data={"csrf": world.csrf, "type": "service-add", "member": "1234",
              "service": "FTTH-<9>", "note": "contracte a l'eina de gestió"},
    )
    assert created.status_code == 303
    assert created.headers["location"] == f"/tickets/{number}?procedures=created&procedure=1#procedures"
    ticket = await world.ticket(number)
    assert ticket.queue == "tresoreria"
    page = await world.client.get(created.headers["location"])
    assert words("ca", "{procedure} recorded: pending.", procedure="P-1") in page.text
    assert "FTTH-&lt;9&gt;" in page.text and "FTTH-<9>" not in page.text
    assert 'action="/plugins/procedures/P-1/done"' in page.text
    assert 'action="/plugins/procedures/P-1/cancel"' in page.text
    # A notice code that is not one of the panel's is not shown; free text never is.
    page = await world.client.get(f"/tickets/{number}?procedures=<script>&procedure=1")
    assert "<script>" not in page.text

    # Done from the panel: back to the ticket, whose status does not change.
    status_before = (await world.ticket(number)).status
    done = await world.client.post(
        "/plugins/procedures/P-1/done",
        data={"csrf": world.csrf, "back": "ticket", "note": "alta feta"},
    )
    assert done.status_code == 303 and done.headers["location"].startswith(f"/tickets/{number}?")
    assert (await world.ticket(number)).status == status_before
    page = await world.client.get(done.headers["location"])
    assert words("ca", "{procedure} is done.", procedure="P-1") in page.text
    assert 'action="/plugins/procedures/P-1/done"' not in page.text  # no longer pending
    # Cancelling it now is refused in the panel of the ticket page.
    again = await world.client.post(
        "/plugins/procedures/P-1/cancel",
        data={"csrf": world.csrf, "back": "ticket", "reason": "error"},
    )
    assert again.status_code == 400 and "P-1" in again.text


async def test_csrf_and_login(web_world):
    world = web_world
    number = await world.mail()
    for path in (f"/plugins/procedures/tickets/{number}/create", "/plugins/procedures/P-1/done"):
        refused = await world.client.post(path, data={"type": "bank", "member": "1234"})
        assert refused.status_code == 403, path
        refused = await world.client.post(path, data={"csrf": "forged", "type": "bank",
                                                      "member": "1234"})
        assert refused.status_code == 403, path
    async with world.repository.reading() as reader:
        assert await store.count(reader.conn, store.ProcedureFilter()) == 0
    for path in ("/plugins/procedures/", "/plugins/procedures/P-1",
                 "/plugins/procedures/export.csv", "/plugins/procedures/members/1234"):
        away = await world.anonymous.get(path)
        assert away.status_code == 303 and away.headers["location"].startswith("/login"), path
    # The panel drawn outside the core's ticket page (no reader's token) has no forms.
    from exobot_procedures.web import panel

    assert await panel(world.plugin, await world.ticket(number), "ca") is None
    await create(world, number)
    drawn = await panel(world.plugin, await world.ticket(number), "ca")
    assert "P-1" in drawn.html and "<form" not in drawn.html


async def test_list_filters_count_and_paging(web_world):
    world = web_world
    one = await world.mail("ona@example.org")
    two = await world.mail("pau@example.org")
    await create(world, one, "bank", "1234")
    world.clock.advance(days=2)
    leave = await create(world, two, "leave", "77")
    world.clock.advance(days=1)
    await create(world, one, "email", "1234")
    await service.finish_procedure(world.plugin, leave.id, state="done", note="",
                                   actor=TREASURER, language="ca")
    # 52 more, written straight into the store, for the paging.
    async with world.repository.connection() as conn:
        for i in range(52):
            await store.create(conn, type="bank", member="900", service=None, ticket=two,
                               actor=TREASURER, note=f"n{i}", now=world.clock.now()
                               + timedelta(minutes=i + 1), effects=())

    async def listed(query: str) -> tuple[int, str]:
        page = await world.client.get(f"/plugins/procedures/?{query}")
        return page.status_code, page.text

    status, text = await listed("")
    assert status == 200 and "55 tràmits" in text and "Pàgina 1 de 2" in text
    assert text.index("P-55") < text.index("P-54")  # newest first
    assert 'rel="next" ' not in text and 'href="/plugins/procedures/?page=2" rel="next"' in text
    status, text = await listed("page=2")
    assert ">P-1<" in text and ">P-55<" not in text
    status, text = await listed("member=1234")
    assert "2 tràmits" in text and ">P-1<" in text and ">P-3<" in text
    assert 'href="/plugins/procedures/export.csv?member=1234"' in text
    status, text = await listed("type=baixa")  # a type's word works too
    assert "1 tràmit " in text and ">P-2<" in text
    assert '<option value="leave" selected>' in text
    status, text = await listed("state=done")
    assert "1 tràmit " in text and "<time>2026-12-04 10:00</time> per @treasurer:example.org" in text
    # Dates are days in the configured zone (UTC here), both included.
    status, text = await listed("from=2026-12-03&to=2026-12-03")
    assert "1 tràmit " in text and ">P-2<" in text
    status, text = await listed("from=2026-12-01&to=2026-12-01&member=1234")
    assert "1 tràmit " in text and ">P-1<" in text
    status, text = await listed("from=2026-13-45")
    assert status == 400
    assert words("ca", "“{word}” is not a date: write it like {example}.", word="2026-13-45",
                 example="2026-03-31") in text
    status, text = await listed("from=2026-12-05&to=2026-12-01&state=perdut")
    assert status == 400 and words("ca", "The first date is after the last one.") in text
    assert "perdut" in text
    status, text = await listed("member=<img>")
    assert "&lt;img&gt;" in text and "<img>" not in text


async def test_procedure_and_member_pages(web_world):
    world = web_world
    number = await world.mail("nova@example.org")
    join = await create(world, number, "join", None, note='<script>alert("x")</script>')
    assert join.member == "nova@example.org"
    page = await world.client.get(f"/plugins/procedures/P-{join.id}")
    assert page.status_code == 200
    assert "&lt;script&gt;" in page.text and "<script>alert" not in page.text
    assert 'name="member_number"' in page.text  # a join for an address asks for the number
    bare = await world.client.get(f"/plugins/procedures/{join.id}")
    assert bare.status_code == 308 and bare.headers["location"] == f"/plugins/procedures/P-{join.id}"
    assert (await world.client.get("/plugins/procedures/P-999")).status_code == 404

    # Done without the number: refused on the page, with what was typed.
    refused = await world.client.post(
        f"/plugins/procedures/P-{join.id}/done",
        data={"csrf": world.csrf, "note": "quota <pagada>"},
    )
    assert refused.status_code == 400 and 'id="done-problem"' in refused.text
    assert "quota &lt;pagada&gt;" in refused.text
    # Cancelling needs a reason.
    refused = await world.client.post(
        f"/plugins/procedures/P-{join.id}/cancel", data={"csrf": world.csrf, "reason": "  "}
    )
    assert refused.status_code == 400 and 'id="cancel-problem"' in refused.text
    done = await world.client.post(
        f"/plugins/procedures/P-{join.id}/done",
        data={"csrf": world.csrf, "member_number": "4321", "note": "quota pagada"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/plugins/procedures/P-{join.id}?done=done#done"
    page = await world.client.get(done.headers["location"])
    assert words("ca", "{procedure} is done.", procedure=f"P-{join.id}") in page.text
    assert 'name="member_number"' not in page.text  # no forms once done
    history = page.text[page.text.index("procedure-history"):]
    assert history.index("creat") < history.index("fet")
    assert "soci 4321" in history and "quota pagada" in history

    member = await world.client.get("/plugins/procedures/members/4321")
    assert member.status_code == 200
    assert "actiu" in member.text and "nova@example.org" in member.text
    assert f">P-{join.id}<" in member.text
    assert "afegit · P-1" in member.text and "tiquet enllaçat · suport#1" in member.text
    unknown = await world.client.get("/plugins/procedures/members/%3Cb%3E")
    assert unknown.status_code == 404 and "&lt;b&gt;" in unknown.text


async def test_csv_export(web_world):
    world = web_world
    number = await world.mail()
    await create(world, number, "bank", "1234", note='=HYPERLINK("http://evil.example/x","clic")')
    world.clock.advance(hours=1)
    await create(world, number, "service-add", "1234", service="-FTTH+1",
                 note="@SUM(1+1)\nsegona línia")
    await create(world, number, "email", "55", note="dades a l'eina de gestió")
    got = await world.client.get("/plugins/procedures/export.csv?member=1234")
    assert got.status_code == 200
    assert got.headers["content-type"] == "text/csv; charset=utf-8"
    assert got.headers["content-disposition"].startswith('attachment; filename="procedures-')
    rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert rows[0] == list(csv_export.COLUMNS)
    assert [row[0] for row in rows[1:]] == ["P-2", "P-1"]
    by_ref = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_ref["P-1"]["note"] == "'=HYPERLINK(\"http://evil.example/x\",\"clic\")"
    assert by_ref["P-2"]["note"] == "'@SUM(1+1)\nsegona línia"
    assert by_ref["P-2"]["service"] == "'-FTTH+1"
    assert by_ref["P-1"]["asked_by"] == "'" + TREASURER
    assert by_ref["P-1"]["type_name"] == "canvi de dades bancàries"
    assert by_ref["P-1"]["ticket"] == f"suport#{number}"
    assert by_ref["P-1"]["asked_at"] == "2026-12-01T10:00:00+00:00"
    assert by_ref["P-1"]["state"] == "pending" and by_ref["P-1"]["processed_at"] == ""
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    everything = await world.client.get("/plugins/procedures/export.csv")
    assert len(list(csv.reader(io.StringIO(everything.content.decode("utf-8-sig"))))) == 4
    bad = await world.client.get("/plugins/procedures/export.csv?to=ahir")
    assert bad.status_code == 400
    for value, expected in [("=1", "'=1"), ("+1", "'+1"), ("-1", "'-1"), ("@a", "'@a"),
                            ("\t1", "'\t1"), ("\r1", "'\r1"), ("1=", "1="), ("", "")]:
        assert csv_export.escape_cell(value) == expected


async def test_odd_digits_in_a_link_are_ignored_not_an_error(web_world):
    """"²" and "①" are digits to str.isdigit() yet int() refuses them, and int() refuses more
    than 4,300 digits: such a link used to answer 500, and five loads of a ticket's page with
    one switched the plugin off (its panel failing five times in a row)."""
    world = web_world
    number = await world.mail()
    odd = ("%C2%B2", "%E2%91%A0", "9" * 5000)
    for value in odd:
        for _ in range(5):
            page = await world.client.get(f"/tickets/{number}?procedures=created&procedure={value}")
            assert page.status_code == 200
        assert world.manager.enabled == ["procedures"], world.manager.disabled
        assert 'id="procedures"' in page.text
        listed = await world.client.get(f"/plugins/procedures/?page={value}")
        assert listed.status_code == 200
        for path in ("/plugins/procedures/", "/plugins/procedures/export.csv"):
            filtered = await world.client.get(f"{path}?ticket=%23{value}")
            assert filtered.status_code == 400, (path, value, filtered.status_code)
        quarantine = await world.client.get(f"/quarantine?done=discarded&id={value}")
        assert quarantine.status_code == 200
