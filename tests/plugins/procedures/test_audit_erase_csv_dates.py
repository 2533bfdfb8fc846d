"""Defects an audit of the procedures plugin found: a privacy erasure of an address holding
`_` or `%` (a LIKE wildcard) selected rows naming another address and then failed whole; the
CSV export let a formula through after a `;` inside a cell (a spreadsheet splitting on `;`
reads a new cell there); a list filter of `to=9999-12-31` (or a day whose start is beyond what
a datetime holds in UTC) answered 500 on all four list and export routes; and the export was
written on the event loop (about 0.7 s for 20,000 rows)."""

from __future__ import annotations

import asyncio
import csv
import io
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from exobot_procedures import csv_export, personal, service, store
from exobot_procedures.store import MemberRow
from exobot_procedures.web import read_filter
from markupsafe import escape
from web_world import TREASURER, web_world_fixture  # noqa: F401  (the fixture)

from exobot import i18n
from exobot.plugins import DataSubject
from exobot.privacy.concerns import like_any

API = "/api/v1/plugins/procedures"
NOT_A_DATE = "“{word}” is not a date: write it like {example}."
FORMULA_STARTS = ("=", "+", "-", "@")


async def create(world, ticket: int, type: str, member: str | None, note: str = ""):
    return await service.create_procedure(
        world.plugin, ticket=ticket, type=type, member=member, service=None, note=note,
        actor=TREASURER, language="ca",
    )


async def kinds(world, procedure_id: int) -> list[str]:
    async with world.repository.reading() as reader:
        return [e.kind for e in await store.history(reader.conn, procedure_id)]


# --- 1. the erasure of an address holding a LIKE wildcard -----------------------------------


async def test_erasing_an_address_with_an_underscore_spares_a_similar_one(make_world, db_url):
    world = await make_world(url=db_url)
    async with world.repository.connection() as conn:
        await store.import_members(conn, [MemberRow("77", "joan_garcia@example.org")],
                                   actor="cli:x", now=world.clock.now())
    join = await create(world, await world.mail("joan_garcia@example.org"), "join", None)
    assert join.member == "joan_garcia@example.org"
    # Another person's procedure naming joan.garcia@ (a dot where `_` is a LIKE wildcard).
    other = await create(world, await world.mail("joan.garcia@example.org"), "email", "1234",
                         note="nova adreça joan.garcia@example.org")
    named = await create(world, await world.mail("ona@example.org"), "email", "55",
                         note="abans JOAN_GARCIA@example.org")

    changed = await personal.erase(world.plugin.ctx, DataSubject(address="joan_garcia@example.org"))

    assert changed > 0
    async with world.repository.reading() as reader:
        member = await store.get_member(reader.conn, "77")
        procedures = {p: await store.get(reader.conn, p) for p in (join.id, other.id, named.id)}
    assert member.address is None
    assert procedures[join.id].member == "erased on 2026-12-01"
    assert procedures[named.id].note == "abans erased on 2026-12-01"
    assert procedures[other.id].note == "nova adreça joan.garcia@example.org"
    assert "erased" in await kinds(world, join.id) and "erased" in await kinds(world, named.id)
    assert "erased" not in await kinds(world, other.id)
    # `%` is a wildcard too: it selects nothing it does not name.
    nothing = await personal.erase(world.plugin.ctx, DataSubject(address="joan%@example.org"))
    assert nothing == 0
    assert (await kinds(world, other.id)).count("erased") == 0
    # The rows are selected with the wildcards escaped, on both backends.
    async with world.repository.reading() as reader:
        for address, expected in (("joan_garcia@example.org", []),
                                  ("joan%@example.org", []),
                                  ("joan.garcia@example.org", [other.id])):
            like = like_any(store.procedures.c.note, {address})
            selected = await reader.conn.execute(sa.select(store.procedures.c.id).where(like))
            assert [row.id for row in selected] == expected, address


# --- 2. formulas after a separator inside a CSV cell ----------------------------------------


def test_a_formula_after_a_separator_inside_a_cell_is_escaped():
    for value, expected in [
        ("rebut;=cmd|' /C calc'!A0", "rebut;'=cmd|' /C calc'!A0"),
        ("a, -1", "a, '-1"),
        ("a\n@b", "a\n'@b"),
        ("a\r\n+b", "a\r\n'+b"),
        ("a\t=b", "a\t'=b"),
        ("=a;=b", "'=a;'=b"),
        ("1-2; 3", "1-2; 3"),
        ("quota 10 - 2", "quota 10 - 2"),
    ]:
        assert csv_export.escape_cell(value) == expected, value


async def test_csv_read_with_semicolons_has_no_formula_cell(make_world):
    world = await make_world()
    ticket = await world.mail("ona@example.org")
    await create(world, ticket, "bank", "1234", note="rebut;=cmd|' /C calc'!A0;@SUM(1+1)")
    await create(world, ticket, "email", "55", note="x,+1\n-2")
    found = await csv_export.read_all(world.plugin, store.ProcedureFilter())
    text = csv_export.procedures_csv(world.plugin, found, "ca")

    lines = text.split("\r\n")
    assert all(line.startswith('"') for line in lines if line)  # every cell quoted
    rows = list(csv.reader(io.StringIO(text)))
    by_ref = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_ref["P-1"]["note"] == "rebut;'=cmd|' /C calc'!A0;'@SUM(1+1)"
    assert by_ref["P-2"]["note"] == "x,'+1\n'-2"
    # However a spreadsheet splits the file (quotes heeded or not), no cell is a formula.
    for separator in (";", ",", "\t"):
        quoted = [c for row in csv.reader(io.StringIO(text), delimiter=separator) for c in row]
        naive = [c for line in text.splitlines() for c in line.split(separator)]
        for cell in quoted + naive:
            assert not cell.lstrip(' "').startswith(FORMULA_STARTS), (separator, cell)


# --- 3. dates beyond what a datetime holds --------------------------------------------------


async def test_a_date_beyond_the_calendar_is_a_400_on_all_four_routes(web_world):
    world = web_world
    await create(world, await world.mail(), "bank", "1234")
    said = i18n.say("ca", NOT_A_DATE, domain="procedures", word="9999-12-31", example="2026-03-31")
    page = await world.client.get("/plugins/procedures/?to=9999-12-31")
    assert page.status_code == 400 and str(escape(said)) in page.text
    export = await world.client.get("/plugins/procedures/export.csv?to=9999-12-31")
    assert export.status_code == 400 and said in export.text
    for path in (API + "/", API + "/export.csv"):
        got = await world.api.get(f"{path}?to=9999-12-31")
        assert got.status_code == 400, path
        assert got.json()["error"] == "bad_filter" and "is not a date" in got.json()["message"]
    # The calendar's last readable day and its first (in UTC here) still list.
    for query in ("to=9999-12-30", "from=0001-01-01"):
        assert (await world.client.get(f"/plugins/procedures/?{query}")).status_code == 200
        assert len((await world.api.get(f"{API}/?{query}")).json()) == 1


async def test_a_day_whose_start_is_before_year_one_in_utc_is_a_problem(web_world):
    """0001-01-01 starts before the year 1 in UTC east of Greenwich (Berlin's old local mean
    time is +00:53): stored as UTC, it would overflow."""
    berlin = ZoneInfo("Europe/Berlin")
    listing = read_filter(web_world.plugin, {"from": "0001-01-01"}, "en", berlin)
    assert listing.problems and listing.where.since is None
    listing = read_filter(web_world.plugin, {"from": "0001-01-02", "to": "9999-12-30"}, "en", berlin)
    assert not listing.problems and listing.where.since and listing.where.until


# --- 4. the export written off the event loop -----------------------------------------------


async def test_the_csv_is_written_off_the_event_loop_with_its_cap(web_world, monkeypatch):
    world = web_world
    number = await world.mail()
    for member in ("1", "2", "3"):
        await create(world, number, "bank", member)
    on_loop: list[bool] = []
    write = csv_export.procedures_csv

    def spy(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return write(*args, **kwargs)

    monkeypatch.setattr(csv_export, "procedures_csv", spy)
    monkeypatch.setattr(csv_export, "MAX_ROWS", 2)
    for client, path in ((world.client, "/plugins/procedures/export.csv"),
                         (world.api, API + "/export.csv")):
        got = await client.get(path)
        assert got.status_code == 200
        assert got.headers["content-type"] == "text/csv; charset=utf-8"
        assert got.headers["content-disposition"].startswith('attachment; filename="procedures-')
        assert got.headers["cache-control"] == "no-store"
        rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
        assert rows[0] == list(csv_export.COLUMNS) and [r[0] for r in rows[1:]] == ["P-3", "P-2"]
    assert on_loop == [False, False]
