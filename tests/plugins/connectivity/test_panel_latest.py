"""The connectivity panel of a ticket whose rounds are all older than its 24 hours (a prober
that stopped) says when the last round was ("darrera ronda fa 9 dies") instead of "no rounds
yet", which stays for a target never probed; a target no longer probed says so. The plugin's
monitors page, in the web's main menu, lists what is probed with its latest round.

The panel is checked twice: with test_web's stand-in context (web.py's own readers) and with
the plugin started by the real plugin manager (its readers over `ctx.reading()`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from exobot_connectivity import store
from test_web import ANNA, NOW, _ticket, world  # noqa: F401  (world: test_web's fixture)

from exobot.web.templating import LANGUAGE_COOKIE
from tests.web.test_plugin_action_labels import VOL, open_ticket, site  # noqa: F401  (fixture)

PANEL = re.compile(r'<ul class="connectivity-figures">(.*?)</ul>', re.S)


async def _rounds(repo, ticket: int | None, target: str, ats: list[datetime]) -> store.Monitor:
    """A monitor started before the first of `ats`, with one full round at each."""
    async with repo.connection() as conn:
        monitor = await store.start(conn, ticket=ticket, target=target, kind="icmp", host=target,
                                    port=None, by=ANNA, now=min(ats) - timedelta(minutes=5))
        for at in ats:
            await store.record_round(conn, monitor.id, at=at, sent=20, received=20,
                                     rtts=[10.0] * 20)
    return monitor


def figures(page: str) -> list[str]:
    """The panel's lines, one per target, without their markup."""
    found = PANEL.search(page)
    assert found is not None, "the page has no connectivity panel"
    return [" ".join(re.sub(r"<[^>]+>", "", item).split())
            for item in re.findall(r"<li>(.*?)</li>", found.group(1), re.S)]


async def test_rounds_older_than_the_period_say_when_the_last_one_was(world):  # noqa: F811
    client, repo = world["client"], world["repo"]
    number = await _ticket(world["service"])
    # A prober that stopped nine days ago, and a target started without any round yet.
    await _rounds(repo, number, "192.0.2.7", [NOW - timedelta(days=9, hours=h) for h in (2, 1)])
    async with repo.connection() as conn:
        await store.start(conn, ticket=number, target="192.0.2.8", kind="icmp",
                          host="192.0.2.8", port=None, by=ANNA, now=NOW - timedelta(minutes=1))
    page = (await client.get(f"/tickets/{number}")).text
    assert figures(page) == [
        "192.0.2.7: cap ronda en les darreres 24 hores; darrera ronda fa 9 dies",
        "192.0.2.8: encara cap ronda",
    ]
    client.cookies.set(LANGUAGE_COOKIE, "es")
    assert figures((await client.get(f"/tickets/{number}")).text)[0] == (
        "192.0.2.7: ninguna ronda en las últimas 24 horas; última ronda hace 9 días"
    )
    client.cookies.set(LANGUAGE_COOKIE, "en")
    assert figures((await client.get(f"/tickets/{number}")).text)[0] == (
        "192.0.2.7: no round in the last 24 hours; last round 9 days ago"
    )


async def test_a_target_started_again_shows_its_newest_round_and_a_stopped_one_says_so(
    world,  # noqa: F811
):
    client, repo = world["client"], world["repo"]
    number = await _ticket(world["service"])
    # Probed 20 days ago, stopped; started again 3 days ago and its prober stopped then.
    await _rounds(repo, number, "192.0.2.7", [NOW - timedelta(days=20)])
    async with repo.connection() as conn:
        await store.stop(conn, ticket=number, target=None, reason="operator",
                         now=NOW - timedelta(days=19))
    await _rounds(repo, number, "192.0.2.7", [NOW - timedelta(days=3)])
    # Another target probed an hour ago, then stopped.
    await _rounds(repo, number, "192.0.2.9", [NOW - timedelta(hours=1)])
    async with repo.connection() as conn:
        await store.stop(conn, ticket=number, target="192.0.2.9", reason="operator", now=NOW)
    lines = figures((await client.get(f"/tickets/{number}")).text)
    assert lines[0] == "192.0.2.7: cap ronda en les darreres 24 hores; darrera ronda fa 3 dies"
    assert lines[1].startswith("192.0.2.9: pèrdua 0,0 %")
    assert lines[1].endswith("; ja no es sondeja")


async def test_the_started_plugin_panel_reads_the_latest_round_too(site):  # noqa: F811
    number = await open_ticket(site.service)
    now = datetime.now(UTC)
    await _rounds(site.repo, number, "192.0.2.10", [now - timedelta(days=9, minutes=m)
                                                    for m in (10, 5)])
    page = (await site.browser.get(f"/tickets/{number}")).text
    assert figures(page) == [
        "192.0.2.10: cap ronda en les darreres 24 hores; darrera ronda fa 9 dies"
    ]


async def test_the_monitors_page_is_in_the_menu_and_lists_what_is_probed(site):  # noqa: F811
    number = await open_ticket(site.service)
    idle = await open_ticket(site.service)
    now = datetime.now(UTC)
    await _rounds(site.repo, number, "192.0.2.10", [now - timedelta(days=9)])
    async with site.repo.connection() as conn:
        await store.start(conn, ticket=idle, target="192.0.2.11", kind="icmp",
                          host="192.0.2.11", port=None, by=VOL, now=now)
    # Every page's menu links to it; on its own page the entry is the current one.
    dashboard = (await site.browser.get("/")).text
    assert re.search(r'<a href="/plugins/connectivity/"\s*>Connectivitat</a>', dashboard)
    page = await site.browser.get("/plugins/connectivity/")
    assert page.status_code == 200
    assert re.search(
        r'<a href="/plugins/connectivity/"\s*aria-current="page">Connectivitat</a>', page.text
    )
    rows = re.findall(r"<tr>(.*?)</tr>", page.text.split("<tbody>", 1)[1], re.S)
    cells = [[" ".join(re.sub(r"<[^>]+>", "", c).split())
              for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]
    assert cells == [
        [f"suport#{number} No em funciona internet", "192.0.2.10", "fa 9 dies", "0,0 %",
         "24 hores"],
        [f"suport#{idle} No em funciona internet", "192.0.2.11", "encara cap ronda", "—",
         "24 hores"],
    ]
    assert f'href="/tickets/{number}"' in page.text
    assert f'href="/plugins/connectivity/tickets/{number}/graph.png?period=24h"' in page.text
    # Stopped: no longer listed.
    async with site.repo.connection() as conn:
        await store.stop(conn, ticket=idle, target=None, reason="operator", now=now)
        await store.stop(conn, ticket=number, target=None, reason="operator", now=now)
    page = await site.browser.get("/plugins/connectivity/")
    assert "Cap tiquet no té destinacions sondejades." in page.text
    assert "192.0.2.1" not in page.text
