"""The procedures' API in process (web_world.py: the real app, the plugin started by the real
PluginManager, a migrated SQLite database): 401 without a token, create (the ticket moves to
tresoreria), list with filters, one procedure with its history, done and cancel, refusals in
the API's error shape (400; 409 when no longer pending; 404 unknown), the CSV, a member, and
the models documented in /api/v1/openapi.json."""

from __future__ import annotations

import csv
import io

from web_world import TREASURER, web_world_fixture  # noqa: F401  (the fixture)

BASE = "/api/v1/plugins/procedures"
IBAN = "ES91 2100 0418 4502 0005 1332"


async def test_without_a_token(web_world):
    world = web_world
    for method, path in [("GET", "/"), ("GET", "/1"), ("GET", "/export.csv"),
                         ("GET", "/members/1"), ("POST", "/"), ("POST", "/1/done"),
                         ("POST", "/1/cancel")]:
        got = await world.anonymous.request(method, BASE + path, json={})
        assert got.status_code == 401, (method, path)
        assert got.json()["error"] == "unauthorized"
    bad = await world.anonymous.get(BASE + "/", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


async def test_create_list_finish(web_world):
    world = web_world
    number = await world.mail("nova@example.org")
    created = await world.api.post(BASE + "/", json={"ticket": number, "type": "alta",
                                                     "note": "formulari rebut"})
    assert created.status_code == 201, created.text
    join = created.json()
    assert join["ref"] == "P-1" and join["type"] == "join" and join["state"] == "pending"
    assert join["member"] == "nova@example.org" and join["asked_by"] == TREASURER
    assert join["type_name"] == "membership join"
    assert [e["kind"] for e in join["history"]] == ["created"]
    assert (await world.ticket(number)).queue == "tresoreria"
    world.clock.advance(days=1)
    bank = (await world.api.post(BASE + "/", json={"ticket": number, "type": "bank",
                                                   "member": "1234"})).json()

    # Refusals: 400 in the API's one shape, in English.
    for body, code in [
        ({"ticket": number, "type": "bank", "member": "1234", "note": f"IBAN {IBAN}"},
         "sensitive_note"),
        ({"ticket": number, "type": "hipoteca", "member": "1234"}, "unknown_type"),
        ({"ticket": number, "type": "service-add", "member": "1234"}, "missing_service"),
        ({"ticket": number, "type": "bank"}, "missing_member"),
    ]:
        refused = await world.api.post(BASE + "/", json=body)
        assert refused.status_code == 400, body
        assert refused.json()["error"] == code, refused.json()
    refused = await world.api.post(BASE + "/", json={"ticket": number, "type": "bank",
                                                     "member": "1", "note": f"x {IBAN}"})
    assert "keep it in the management tool" in refused.json()["message"]
    missing = await world.api.post(BASE + "/", json={"ticket": 999, "type": "bank",
                                                     "member": "1"})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    listed = await world.api.get(BASE + "/")
    assert [p["ref"] for p in listed.json()] == ["P-2", "P-1"]
    assert [p["ref"] for p in (await world.api.get(BASE + "/?type=banc")).json()] == ["P-2"]
    assert [p["ref"] for p in (await world.api.get(BASE + "/?member=1234")).json()] == ["P-2"]
    assert [p["ref"] for p in (await world.api.get(
        BASE + "/?from=2026-12-01&to=2026-12-01")).json()] == ["P-1"]
    assert [p["ref"] for p in (await world.api.get(BASE + "/?limit=1&offset=1")).json()] == [
        "P-1"]
    bad = await world.api.get(BASE + "/?from=ahir")
    assert bad.status_code == 400 and bad.json()["error"] == "bad_filter"
    assert "is not a date" in bad.json()["message"]

    # Done: a join recorded with an address needs the new member's number.
    refused = await world.api.post(BASE + "/1/done", json={"note": "ok"})
    assert refused.status_code == 400 and refused.json()["error"] == "missing_number"
    done = await world.api.post(BASE + "/1/done", json={"member_number": "4321",
                                                        "note": "quota pagada"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["state"] == "done" and body["member"] == "4321"
    assert body["processed_by"] == TREASURER
    assert [(e["kind"], e["note"], e["member"]) for e in body["history"]] == [
        ("created", "formulari rebut", None), ("done", "quota pagada", "4321")]
    again = await world.api.post(BASE + "/1/cancel", json={"reason": "error"})
    assert again.status_code == 409 and again.json()["error"] == "not_pending"
    refused = await world.api.post(BASE + f"/{bank['id']}/cancel", json={"reason": "   "})
    assert refused.status_code == 400 and refused.json()["error"] == "missing_reason"
    cancelled = await world.api.post(BASE + f"/{bank['id']}/cancel",
                                     json={"reason": "duplicat"})
    assert cancelled.json()["state"] == "cancelled"
    assert (await world.api.get(BASE + "/99")).status_code == 404
    assert (await world.api.post(BASE + "/99/done", json={})).status_code == 404
    assert (await world.api.get(BASE + "/2")).json()["history"][-1]["note"] == "duplicat"

    member = await world.api.get(BASE + "/members/4321")
    assert member.status_code == 200
    found = member.json()
    assert found["member"]["active"] is True and found["member"]["address"] == "nova@example.org"
    assert [p["ref"] for p in found["procedures"]] == ["P-1"]
    assert [c["change"] for c in found["changes"]] == ["added", "linked"]
    assert (await world.api.get(BASE + "/members/5555")).status_code == 404

    exported = await world.api.get(BASE + "/export.csv?state=cancelled")
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [row[0] for row in rows] == ["reference", "P-2"]


async def test_openapi_documents_the_routes(web_world):
    spec = (await web_world.api.get("/api/v1/openapi.json")).json()
    paths = spec["paths"]
    for path in (BASE[len("/api/v1"):] + suffix for suffix in
                 ("/", "/{procedure_id}", "/export.csv", "/members/{number}",
                  "/{procedure_id}/done", "/{procedure_id}/cancel")):
        assert path in paths, sorted(paths)
    schemas = spec["components"]["schemas"]
    assert schemas["CreateIn"]["properties"]["note"]["description"].startswith("A reference")
    assert "ProcedureDetail" in schemas and "MemberDetail" in schemas
    assert schemas["CancelIn"]["required"] == ["reason"]
