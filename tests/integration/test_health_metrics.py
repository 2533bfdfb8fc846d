"""/healthz, `exobot healthcheck` and the Prometheus metrics on the real stack: every component
reported, 503 while the database is unreachable or the outbox has work and SMTP has been down
for more than two minutes (the App's clock moved forward), 200 again after; metrics scraped
over HTTP after a mail and a chat command."""

from __future__ import annotations

import asyncio
import email.policy
import os
import socket

import httpx
import pytest
from clocks import ShiftedClock
from harness import free_port, member_mail, unique, wait_until
from matrix_harness import body_of, sender_of
from prometheus_client.parser import text_string_to_metric_families

from exobot.config import MetricsConfig
from exobot.web.server import WebListenError

pytestmark = pytest.mark.integration


async def healthz(inst) -> httpx.Response:
    """GET /healthz without any cookie or token."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(inst.web_url + "/healthz")


async def wait_health(inst, status: int, what: str) -> dict:
    """Wait until /healthz answers `status`; returns its body."""

    async def answered() -> dict | None:
        response = await healthz(inst)
        return response.json() if response.status_code == status else None

    return await wait_until(answered, what=what)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """The scraped samples by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_healthz_and_metrics_with_every_component(
    make_instance, matrix_setup, volunteer
):
    setup = matrix_setup()
    vol = await volunteer(setup)
    inst = make_instance(matrix=setup, web=True)
    inst.config.metrics = MetricsConfig(listen=f"127.0.0.1:{free_port()}")
    app = await inst.start()
    app.metrics.database.cache_seconds = 0  # this test reads its own changes at once

    body = await wait_health(inst, 200, "a healthy exobot")
    components = body["components"]
    assert body["status"] == "ok"
    assert set(components) >= {"database", "imap", "smtp", "matrix", "scheduler", "plugins"}
    assert components["database"]["state"] == "ok"
    assert components["imap"]["state"] == "ok"
    assert components["imap"]["last_success"] is not None
    assert components["scheduler"]["state"] in ("idle", "ok")
    assert components["plugins"]["state"] == "off"
    assert all(part["state"] != "failing" for part in components.values())

    async def synced() -> bool:
        return (await healthz(inst)).json()["components"]["matrix"]["state"] == "ok"

    await wait_until(synced, what="a completed Matrix sync")
    # Public and cheap: no session cookie set, nothing a member wrote, not cacheable.
    response = await healthz(inst)
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"

    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject="Sense connexió"))
    await inst.wait_tickets(1)
    await inst.wait_mailbox(member, 1)  # the acknowledgement
    room = setup.rooms["suport"]
    mark = vol.mark(room)
    await vol.send(room, "!show suport#1")
    await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and "Sense connexió" in (body_of(e) or ""),
        after=mark,
        what="the answer to !show",
    )
    await inst.wait_outbox_idle()

    async def command_counted() -> dict | None:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"http://127.0.0.1:{app.metrics_port}/metrics")
        got = samples(response.text)
        answered = got.get(("exobot_command_seconds_count", (("command", "show"),)))
        # The root's edit (due a few seconds after a change) may still be queued for chat.
        posted = got.get(("exobot_outbox_backlog", (("kind", "chat"),))) == 0
        return got if answered and posted else None

    got = await wait_until(command_counted, what="the command and chat posts in the metrics")
    assert got[("exobot_mails_ingested_total", ())] == 1
    assert got[("exobot_mail_parse_seconds_count", ())] == 1
    assert 0 < got[("exobot_mail_parse_seconds_sum", ())] < 30
    assert got[("exobot_command_seconds_count", (("command", "show"),))] == 1
    assert got[("exobot_tickets", (("queue", "suport"), ("status", "new")))] == 1
    assert 0 < got[("exobot_oldest_new_ticket_age_seconds", ())] < 3600
    assert got[("exobot_quarantine_size", ())] == 0
    assert got[("exobot_outbox_backlog", (("kind", "mail"),))] == 0
    assert got[("exobot_outbox_backlog", (("kind", "chat"),))] == 0
    assert got[("exobot_outbox_failed", (("kind", "mail"),))] == 0
    assert got[("exobot_outbox_delivery_failures_total", (("kind", "mail"),))] == 0
    assert got[("exobot_database_up", ())] == 1
    assert ("exobot_event_loop_lag_seconds", ()) in got
    assert all(name.startswith("exobot_") for name, _ in got if not name.startswith("python_"))


async def test_outbox_stalled_while_smtp_is_down_for_two_minutes(make_instance, stack):
    clock = ShiftedClock()
    inst = make_instance(web=True, clock=clock)
    app = await inst.start()
    assert app.metrics_port is None  # no metrics section: no metrics server
    await wait_health(inst, 200, "a healthy exobot")
    check = await asyncio.to_thread(inst.run_cli, "healthcheck")  # the loop keeps serving
    assert check.returncode == 0, check.stderr

    stack.stop_smtp()
    try:
        member = unique("member")
        raw = member_mail(member, inst.address).as_bytes(policy=email.policy.SMTP)
        await inst.deliver_raw(raw, member)  # LMTP: the relay is down
        await inst.wait_tickets(1)

        async def failed_once() -> bool:
            return app.sender.health.last_failure is not None

        await wait_until(failed_once, what="a failed delivery")

        async def told_failing() -> dict | None:
            # The report is cached for a second: one asked just before the failure (the
            # healthcheck above) may still be served.
            response = await healthz(inst)
            assert response.status_code == 200, response.text  # not yet for two minutes
            body = response.json()
            return body if body["components"]["smtp"]["state"] == "failing" else None

        body = await wait_until(told_failing, what="/healthz telling smtp failing")
        assert body["components"]["smtp"]["stalled"] is False

        clock.advance(minutes=2, seconds=5)
        body = await wait_health(inst, 503, "the stalled outbox")
        assert body["status"] == "failing"
        assert body["components"]["smtp"]["stalled"] is True
        assert body["components"]["database"]["state"] == "ok"
        assert body["components"]["imap"]["state"] == "ok"
        assert body["components"]["matrix"]["state"] == "off"
        check = await asyncio.to_thread(inst.run_cli, "healthcheck")
        assert check.returncode == 1
        assert "HTTP 503" in check.stderr and "smtp failing (stalled)" in check.stderr
    finally:
        stack.start_smtp()
    app.sender.wake.set()
    await inst.wait_mailbox(member, 1)
    body = await wait_health(inst, 200, "health back after the outbox drained")
    assert body["components"]["smtp"]["state"] == "ok"
    check = await asyncio.to_thread(inst.run_cli, "healthcheck")
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "healthy"


async def test_unreachable_database_is_503_until_it_is_back(make_instance):
    inst = make_instance(web=True)
    await inst.start()
    await wait_health(inst, 200, "a healthy exobot")
    folder = inst.db_path.parent
    away = folder.with_name(folder.name + "-away")
    os.rename(folder, away)  # the database file (and its folder) is gone
    try:
        body = await wait_health(inst, 503, "the missing database")
        assert body["components"]["database"]["state"] == "failing"
        assert body["status"] == "failing"
    finally:
        os.rename(away, folder)
    body = await wait_health(inst, 200, "the database back")
    assert body["components"]["database"]["state"] == "ok"


async def test_healthz_needs_no_login_and_other_pages_still_do(make_instance):
    inst = make_instance(web=True)
    await inst.start()
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(inst.web_url + "/healthz")).status_code == 200
        assert (await client.head(inst.web_url + "/healthz")).status_code == 200
        page = await client.get(inst.web_url + "/tickets", follow_redirects=False)
    assert page.status_code == 303 and "/login" in page.headers["location"]


async def test_metrics_listen_on_a_busy_port_stops_the_start_with_one_line(make_instance):
    inst = make_instance()
    port = free_port()
    inst.config.metrics = MetricsConfig(listen=f"127.0.0.1:{port}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(WebListenError, match=f"metrics.listen: cannot listen on 127.0.0.1:{port}"):
            await inst.start()


async def test_a_homeserver_unreachable_since_the_start_stalls_after_two_minutes(
    make_instance, tmp_path
):
    from exobot.config import MatrixConfig

    clock = ShiftedClock()
    inst = make_instance(web=True, clock=clock)
    inst.config.matrix = MatrixConfig(
        homeserver=f"http://127.0.0.1:{free_port()}",  # nobody listens there
        user_id="@exobot:example.org",
        password="a-password-nobody-checks",
        store_path=tmp_path / "matrix",
    )
    app = inst.app = await _start_without_chat(inst)

    async def refused() -> bool:
        return app.matrix.health.last_failure is not None

    await wait_until(refused, what="a refused connection to the homeserver")
    body = await wait_health(inst, 200, "mail still working")
    assert body["components"]["matrix"]["state"] == "failing"
    # Retention and plugins' jobs run without chat; only the alert sweep waits for it.
    assert body["components"]["scheduler"]["state"] in ("idle", "ok")
    clock.advance(minutes=2, seconds=5)
    body = await wait_health(inst, 503, "the stalled Matrix connection")
    assert body["components"]["matrix"]["stalled"] is True
    assert body["components"]["imap"]["state"] == "ok"


async def _start_without_chat(inst):
    """Start the instance's App without waiting for chat (it never comes)."""
    from exobot.app import App

    app = App(inst.config, clock=inst.clock)
    inst.app = app
    await app.start()
    await asyncio.wait_for(app.intake.connected.wait(), 90)
    return app


async def test_postgresql_refusing_connections_is_503_until_it_accepts_again(make_instance, stack):
    if stack.postgres_port is None:
        pytest.skip("the test stack runs without PostgreSQL")
    import psycopg
    from sqlalchemy.engine import make_url

    url = stack.postgres_url()
    dbname = make_url(url).database
    admin_url = make_url(url).set(drivername="postgresql", database="postgres")
    inst = make_instance(web=True)
    inst.config.database.url = url
    inst.config.metrics = MetricsConfig(listen=f"127.0.0.1:{free_port()}")
    app = await inst.start()
    app.metrics.database.cache_seconds = 0
    await wait_health(inst, 200, "a healthy exobot on PostgreSQL")

    def admin(sql: str) -> None:
        dsn = admin_url.render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    async def scrape() -> dict:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"http://127.0.0.1:{app.metrics_port}/metrics")
        return samples(response.text)

    assert (await scrape())[("exobot_database_up", ())] == 1
    # As a stopped server looks to exobot: every connection cut, no new one accepted.
    await asyncio.to_thread(admin, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    try:
        await asyncio.to_thread(
            admin,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}'",
        )
        body = await wait_health(inst, 503, "the refused database")
        assert body["components"]["database"]["state"] == "failing"
        assert (await scrape())[("exobot_database_up", ())] == 0
    finally:
        await asyncio.to_thread(admin, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    body = await wait_health(inst, 200, "the database accepting again")
    assert body["components"]["database"]["state"] == "ok"
    assert (await scrape())[("exobot_database_up", ())] == 1
