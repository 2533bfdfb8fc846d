"""The connectivity plugin end to end on the real stack (Synapse, Dovecot, SMTP, fping against
loopback addresses): the root message offers `!monitor` for the addresses in the member's
mail; `!vigila` starts probing and the first round is stored within 10 s; refused and unknown
targets and the per-ticket limit get clear answers; `!vigilats` lists; `!gràfic` posts the PNG
encrypted into the thread of an encrypted queue room and the volunteer's client decrypts it;
the ticket page shows the Connectivity panel to a logged-in operator (figures as text, period
links; the image and each link a PNG, not cached); `prou` stops one; `!resolve` stops the rest
and posts the summary in the thread; the SmokePing CLI writes what runs."""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import body_of, sender_of
from nio import MemoryDownloadResponse
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from exobot.db import web as records
from exobot.i18n import say, say_plural
from exobot.web.auth import SESSION_COOKIE

pytestmark = pytest.mark.integration

DOMAIN = "connectivity"
SETTINGS = {
    "step": "3s",
    "pings": 3,
    "max_per_ticket": 2,
    "reference_targets": ["127.0.0.1"],
}


def words(msgid: str, **params: object) -> str:
    return say("ca", msgid, domain=DOMAIN, **params)


def figures_pattern(target: str) -> re.Pattern:
    """The panel's text line for a target that answered: its loss and median in Catalan."""
    loss = re.escape(words("loss {percent} %", percent="PCT")).replace("PCT", r"\d+,\d")
    median = re.escape(words("median {ms} ms", ms="MS")).replace("MS", r"\d+,\d")
    return re.compile(re.escape(target) + ": " + loss + ", " + median)


async def test_monitor_from_chat_on_the_real_stack(make_plugin_instance, matrix_setup, volunteer):
    setup = matrix_setup(encrypted={"suport"})
    inst: Instance = make_plugin_instance({"connectivity": SETTINGS}, matrix=setup, web=True)
    app = await inst.start()
    assert "connectivity" in app.plugins.enabled, app.plugins.disabled
    vol = await volunteer(setup)
    room = setup.rooms["suport"]
    prefix = inst.config.tickets.prefix

    async def operator_known() -> bool:
        return app.bot.is_operator(setup.volunteer_user_id)

    await wait_until(operator_known, what="the volunteer known as an operator")

    def from_bot(predicate):
        return lambda e: (
            sender_of(e) == setup.bot_user_id
            and e.get("type") == "m.room.message"
            and predicate(body_of(e) or "")
        )

    # The member's mail names two addresses: the root message offers both commands.
    mark = vol.mark(room)
    body = "Hola, no tinc internet. El meu router és 127.0.0.2 i la IP pública 127.0.0.3."
    await inst.send(member_mail(unique("membre"), inst.address, body=body))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    ref = f"{prefix}#{number}"
    offer = words("To probe {address}: !monitor {ref} {address}", address="127.0.0.2", ref=ref)
    root = await vol.wait_for(room, from_bot(lambda b: offer in b), after=mark, what="the offer")
    assert words(
        "To probe {address}: !monitor {ref} {address}", address="127.0.0.3", ref=ref
    ) in body_of(root)
    thread = root["event_id"]

    # !vigila starts probing: an answer, and the first round stored within 10 s.
    mark = vol.mark(room)
    await vol.send(room, f"!vigila {ref} 127.0.0.2")
    await vol.wait_for(
        room, from_bot(lambda b: "127.0.0.2" in b and ref in b), after=mark, what="the start"
    )

    async def first_round() -> tuple | None:
        rows = inst.query(
            "SELECT m.started_at, r.at, r.sent, r.received FROM connectivity_rounds r "
            "JOIN connectivity_monitors m ON m.id = r.monitor_id "
            "WHERE m.ticket = :n ORDER BY r.at LIMIT 1",
            n=number,
        )
        return rows[0] if rows else None

    started_at, at, sent, received = await wait_until(first_round, what="the first round")

    delay = datetime.fromisoformat(str(at)) - datetime.fromisoformat(str(started_at))
    assert delay <= timedelta(seconds=10), delay
    assert (sent, received) == (3, 3)

    # The reference target is probed too.
    async def reference_round() -> bool:
        return bool(
            inst.scalar(
                "SELECT count(*) FROM connectivity_rounds r JOIN connectivity_monitors m "
                "ON m.id = r.monitor_id WHERE m.ticket IS NULL AND m.target = '127.0.0.1'"
            )
        )

    await wait_until(reference_round, what="a round of the reference target")

    # Refusals: multicast, a name that does not resolve, a duplicate, then the limit of 2.
    for command, expected in [
        (
            f"!vigila {ref} 224.0.0.1",
            words("“{target}” is a multicast address: it cannot be probed.", target="224.0.0.1"),
        ),
        (
            f"!monitor {ref} no-such-host.invalid",
            words("“{target}” does not resolve to any address.", target="no-such-host.invalid"),
        ),
        (
            f"!monitor {ref} 127.0.0.2",
            words("{target} is already being probed for {ref}.", target="127.0.0.2", ref=ref),
        ),
    ]:
        mark = vol.mark(room)
        await vol.send(room, command)
        answer = await vol.wait_for(
            room, from_bot(lambda b, e=expected: e in b), after=mark, what=expected
        )
        assert expected in body_of(answer)
    mark = vol.mark(room)
    await vol.send(room, f"!monitor {ref} 127.0.0.3 tcp:9")
    await vol.wait_for(room, from_bot(lambda b: "127.0.0.3 tcp:9" in b), after=mark, what="2nd")
    limit = say_plural(
        "ca",
        "{ref} already has {count} target probed, the most allowed.",
        "{ref} already has {count} targets probed, the most allowed.",
        2,
        domain=DOMAIN,
        ref=ref,
    )
    mark = vol.mark(room)
    await vol.send(room, f"!monitor {ref} 127.0.0.4")
    await vol.wait_for(room, from_bot(lambda b: limit in b), after=mark, what="the limit")

    # !vigilats lists both, per ticket.
    mark = vol.mark(room)
    await vol.send(room, "!vigilats")
    listed = await vol.wait_for(
        room, from_bot(lambda b: f"{ref}:" in b), after=mark, what="the list"
    )
    assert f"• {ref}: 127.0.0.2, 127.0.0.3 tcp:9" in body_of(listed)

    # !gràfic posts the PNG into the ticket's thread, titled in Catalan.
    title = words("{ref}: connectivity, last {period}", ref=ref, period="3h")
    mark = vol.mark(room)
    await vol.send(room, f"!gràfic {ref} 3h")
    image = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id
        and e.get("content", {}).get("msgtype") == "m.image",
        after=mark,
        what="the graph in the thread",
    )
    content = image["content"]
    assert content.get("m.relates_to", {}).get("event_id") == thread
    assert content["info"]["mimetype"] == "image/png"
    assert title in str(content.get("body"))
    # Encrypted on the wire and as a file: the volunteer's client downloads and decrypts it.
    assert vol.wire_type(image["event_id"]) == "m.room.encrypted"
    assert "url" not in content
    file = content["file"]
    downloaded = await vol.client.download(file["url"])
    assert isinstance(downloaded, MemoryDownloadResponse), downloaded
    assert not downloaded.body.startswith(b"\x89PNG")  # the homeserver holds ciphertext
    png = decrypt_attachment(downloaded.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    assert len(png) == content["info"]["size"]
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG"
        assert picture.size == (content["info"]["w"], content["info"]["h"])
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 16, colours  # drawn, not a blank canvas

    # The ticket page, for a logged-in operator: the Connectivity panel with the figures as
    # text, the period links, and the image and each link served as a PNG, not cached.
    async with app.repository.connection() as conn:
        cookie, _session = await records.create_session(
            conn, setup.volunteer_user_id, timedelta(hours=1), datetime.now(UTC)
        )
    async with httpx.AsyncClient(
        base_url=inst.web_url, cookies={SESSION_COOKIE: cookie}, timeout=60
    ) as web:
        page = await web.get(f"/tickets/{number}")
        assert page.status_code == 200, page.text
        heading = rf'<h2 id="panel-\d+-title">{re.escape(words("Connectivity"))}</h2>'
        assert re.search(heading, page.text), page.text
        assert figures_pattern("127.0.0.2").search(page.text), page.text
        reference = words("reference")
        assert figures_pattern(f"127.0.0.1 ({reference})").search(page.text), page.text
        graph = f"/plugins/connectivity/tickets/{number}/graph.png"
        sources = [html.unescape(src) for src in re.findall(r'<img src="([^"]+)"', page.text)]
        shown = [src for src in sources if src.startswith(graph)]
        assert shown == [f"{graph}?period=24h"], sources
        links = [
            html.unescape(href)
            for href in re.findall(r'href="([^"]+)"', page.text)
            if html.unescape(href).startswith(graph)
        ]
        assert links == [f"{graph}?period={period}" for period in ("3h", "24h", "7d")], links
        for url in [*shown, *links]:
            response = await web.get(url)
            assert response.status_code == 200, (url, response.text)
            assert response.headers["content-type"] == "image/png", url
            assert response.headers["cache-control"] == "no-store", url
            with Image.open(io.BytesIO(response.content)) as picture:
                assert picture.format == "PNG", url

    # prou stops one target.
    mark = vol.mark(room)
    await vol.send(room, f"!vigila {ref} prou 127.0.0.3 tcp:9")
    stopped = words("Stopped probing for {ref}: {targets}.", ref=ref, targets="127.0.0.3 tcp:9")
    await vol.wait_for(room, from_bot(lambda b: stopped in b), after=mark, what="the stop")
    assert inst.query(
        "SELECT target FROM connectivity_monitors WHERE ticket = :n AND stopped_at IS NULL",
        n=number,
    ) == [("127.0.0.2",)]

    # !resolve stops the rest and posts the summary in the ticket's thread.
    mark = vol.mark(room)
    await vol.send(room, f"!resolve {ref}")
    head = words("Probing stopped: {ref} is closed. Summary:", ref=ref)
    summary = await vol.wait_for(
        room, from_bot(lambda b: head in b), after=mark, what="the summary note"
    )
    content = summary["content"]
    assert content.get("m.relates_to", {}).get("event_id") == thread
    assert "127.0.0.2" in body_of(summary) and "0 %" in body_of(summary)
    assert inst.query(
        "SELECT stop_reason FROM connectivity_monitors WHERE ticket = :n AND target = '127.0.0.2'",
        n=number,
    ) == [("resolved",)]
    # The reference target keeps running.
    assert inst.scalar(
        "SELECT count(*) FROM connectivity_monitors WHERE ticket IS NULL AND stopped_at IS NULL"
    ) == 1

    # The SmokePing include names what runs (exobot stopped: the CLI is its own process on
    # the same SQLite file).
    await inst.stop()
    out = inst.config_path.parent / "targets.smokeping"
    done = inst.run_cli("connectivity", "smokeping-targets", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "+ exobot" in text and "++ references" in text
    assert "probe = FPing\nhost = 127.0.0.1" in text
    assert f"ticket_{number}" not in text  # resolved: nothing runs for it
