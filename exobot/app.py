"""Composition root: builds every part from the configuration, starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import signal
from datetime import timedelta

from exobot.cancelling import cancel, cancel_and_wait
from exobot.config import Config
from exobot.core.actions import new_registry
from exobot.core.clock import Clock, SystemClock
from exobot.core.events import EventBus, OutboxQueued
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import web as web_records
from exobot.db.commits import SqliteCommitWatch
from exobot.db.engine import (
    READ_ONLY,
    connect_existing_sqlite,
    create_engine,
    create_sync_engine,
    is_sqlite,
    sqlite_file,
)
from exobot.db.migrate import upgrade, upgrade_async
from exobot.db.repository import SqlRepository
from exobot.db.state import get_state, set_state_once
from exobot.delivery import OTHER_PROCESS_WAIT_SECONDS, RetryPolicy
from exobot.health import FAILING, OFF, OK, Health
from exobot.jobs import AlertSweep, Scheduler
from exobot.leader import Leadership, migrating_alone
from exobot.mail.intake import ImapIntake, ImapSettings
from exobot.mail.msgid import MessageIds
from exobot.mail.outbound import MailSender, mail_sender
from exobot.mail.processor import MailProcessor, MailSettings
from exobot.mail.sandbox import ParseSandbox, SandboxSettings
from exobot.mail.send_helper import HelperSetup, SendHelper
from exobot.matrix.bot import BotSettings, MatrixBot
from exobot.matrix.catchup import PatientRetry, hurry_chat
from exobot.matrix.client import MatrixClient, MatrixLoginError, MatrixSettings
from exobot.matrix.operators import OperatorRecord
from exobot.matrix.poster import ChatSender, LoginLinks
from exobot.matrix.render import Renderer
from exobot.matrix.rooms import QueueRooms
from exobot.metrics import Metrics
from exobot.plugins import Host, PluginManager
from exobot.retention import Retention
from exobot.runlock import RunLock, keep_run_lock
from exobot.web.app import create_app
from exobot.web.context import WebContext, WebSettings
from exobot.web.health import add_health_route
from exobot.web.homeserver import PasswordChecker
from exobot.web.server import WebListenError, WebServer
from exobot.wording import sensitive_note

log = logging.getLogger("exobot.app")

HMAC_SECRET_KEY = "mail.hmac_secret"
PROCESSOR_SWEEP_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
ROOM_RETRY_SECONDS = 60.0
# The chat worker's retries (as its own default): 5 s doubling up to an hour, ten attempts,
# counted only while the homeserver answers.
CHAT_RETRY = RetryPolicy(base=timedelta(seconds=5))


def _read_sqlite_header(url: str) -> None:
    """Open the SQLite file anew, read-write as the App uses it, and read its schema version:
    raises when the file is gone, unreadable or not a database."""
    path = sqlite_file(url)
    if path is None:
        return
    conn = connect_existing_sqlite(path, timeout=1.0)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    finally:
        conn.close()


def _migrate_alone(url: str, branches: dict, first_number: int | None) -> None:
    """Apply the migrations holding the migration lock (blocking: run it in a thread)."""
    with migrating_alone(url):
        upgrade(url, "head", branches, first_number)


async def hmac_secret(repository: SqlRepository, configured: str | None) -> str:
    """The configured secret, or one generated on first start and kept in the database."""
    if configured:
        return configured
    async with repository.connection() as conn:
        stored = await get_state(conn, HMAC_SECRET_KEY)
        if stored is None:
            stored = await set_state_once(conn, HMAC_SECRET_KEY, secrets.token_hex(32))
        return stored


def service_settings(config: Config) -> ServiceSettings:
    """The core's settings from the configuration."""
    return ServiceSettings(
        prefix=config.tickets.prefix,
        default_queue=config.tickets.default_queue,
        queues=frozenset(config.tickets.queues),
        language=config.language,
        own_address=config.mail.address,
        new_after=config.alerts.new_after,
        repeat_every=config.alerts.repeat_every,
        stalled_every=config.alerts.stalled_every,
        announce=config.matrix is not None,
        mask=config.privacy.mask,
        ack_limit_per_day=config.mail.ack_limit_per_day,
    )


class App:
    """exobot as one process: mail intake and processing, the mail and chat workers, the Matrix
    client and the alert scheduler, as tasks of one event loop.

    Those are the leader's parts (exobot.leader): they run while this instance leads, which on
    SQLite is always. The web, the API, /healthz, the metrics and the event-loop lag run in
    every instance from the start.
    """

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        # The one clock every part reads (a test may give a fake one to drive a whole App).
        self.clock = clock or SystemClock()
        self.engine = None
        self.repository: SqlRepository | None = None
        self.service: TicketService | None = None
        self.processor: MailProcessor | None = None
        self.intake: ImapIntake | None = None
        self.sender: MailSender | None = None
        self.matrix: MatrixClient | None = None
        self.rooms: QueueRooms | None = None
        self.poster: ChatSender | None = None
        self.bot: MatrixBot | None = None
        # The leader's record of who operates, read by the instances that do not sync.
        self.operator_record: OperatorRecord | None = None
        self.scheduler: Scheduler | None = None
        self.retention: Retention | None = None
        self.web: WebServer | None = None
        self.chat_ready = asyncio.Event()  # Matrix connected, rooms joined, workers running
        self.events = EventBus()
        # The actions the bot, the web and the API offer: the core's, then the plugins'.
        self.actions = new_registry()
        self.plugins = PluginManager(config)
        self._mail_arrived = asyncio.Event()
        self._tasks: list[asyncio.Task] = []  # every instance's tasks
        self._leader_tasks: list[asyncio.Task] = []  # the leader's, while it leads
        self._election_tasks: list[asyncio.Task] = []  # the leader lock's loop and its follower
        # Leader's parts asked to stop that had not ended when their stop was cut short or
        # timed out: stop() waits for them before it lets the leader lock go.
        self._stopping: list[asyncio.Task] = []
        # Who leads on this database; made at start unless a test gives one.
        self.leadership: Leadership | None = None
        # What /healthz reports and what metrics.listen serves; the parts report into them.
        self.health = Health(self.clock)
        self.metrics = Metrics(self.clock)
        self.metrics_port: int | None = None  # bound once started, when metrics.listen is set
        self._plugins_started_at = None
        # "exobot runs on this database" (exobot.runlock), held from start to stop.
        self.run_lock: RunLock | None = None

    async def build(self) -> None:
        """Migrate the database, wire the parts together and start the parsing workers
        (nothing handles mail yet)."""
        cfg = self.config
        branches = self.plugins.migration_branches()
        if is_sqlite(cfg.database.url):
            await upgrade_async(cfg.database.url, branches, cfg.tickets.first_number)
        else:
            # Another instance may be starting too: its migrations first, then ours (none left).
            await asyncio.to_thread(
                _migrate_alone, cfg.database.url, branches, cfg.tickets.first_number
            )
        self.engine = create_engine(cfg.database.url)
        self.repository = SqlRepository(self.engine, create_sync_engine(cfg.database.url))
        secret = await hmac_secret(
            self.repository,
            cfg.mail.hmac_secret.get_secret_value() if cfg.mail.hmac_secret else None,
        )
        message_ids = MessageIds(secret, cfg.mail.address.rpartition("@")[2])
        self.service = TicketService(
            self.repository,
            message_ids,
            service_settings(cfg),
            events=self.events,
            clock=self.clock,
        )
        self.service.mail_hook = self.plugins.run_mail_hooks
        self.service.sensitive_note = functools.partial(sensitive_note, cfg.language)
        rule_settings = MailSettings(
            own_address=cfg.mail.address,
            prefix=cfg.tickets.prefix,
            ack_limit_per_day=cfg.mail.ack_limit_per_day,
            message_ids=message_ids,
            announce=cfg.matrix is not None,
            max_size=cfg.mail.max_size,
            language=cfg.language,
            trusted_authserv_id=cfg.mail.trusted_authserv_id,
            new_tickets_per_sender_per_hour=cfg.mail.new_tickets_per_sender_per_hour,
            form_senders=frozenset(address.lower() for address in cfg.mail.form_senders),
            mask=cfg.privacy.mask,
            legacy_tags=tuple(cfg.tickets.legacy_tags),
        )
        # The parsing workers start with the first mail (a follower never starts them) and
        # stop after mail.parse_idle_seconds without one.
        parser = ParseSandbox(
            SandboxSettings(
                timeout=cfg.mail.parse_timeout.total_seconds(),
                memory=cfg.mail.parse_memory,
                workers=cfg.mail.parse_workers,
                idle_seconds=cfg.mail.parse_idle_seconds,
            ),
            clock=self.clock,
        )
        self.processor = MailProcessor(
            self.repository, self.service, rule_settings, parser=parser, clock=self.clock
        )
        imap = cfg.mail.imap
        self.intake = ImapIntake(
            ImapSettings(
                host=imap.host,
                port=imap.port,
                username=imap.username,
                password=imap.password.get_secret_value(),
                security=imap.security,
                folder=imap.folder,
                poll_interval=imap.poll_interval.total_seconds(),
                idle_timeout=imap.idle_timeout.total_seconds(),
                max_size=cfg.mail.max_size,
                expunge_after=cfg.privacy.mailbox_retention,
            ),
            self.repository,
            on_stored=self._mail_arrived.set,
            clock=self.clock,
        )
        self.sender = mail_sender(
            cfg, self.repository, self.service, message_ids.loop_marker(), self.clock
        )
        if not is_sqlite(cfg.database.url) and cfg.mail.send_helper:
            setup = HelperSetup(cfg, message_ids.loop_marker())
            self.sender.helper = SendHelper(setup)
        self.events.subscribe(OutboxQueued, self._wake_worker)
        self._watch_core()
        if cfg.matrix is not None:
            self._build_matrix()
        else:
            self.health.component("matrix").enabled = False
        if self.scheduler is None:  # without chat: the plugins' jobs and retention
            self.scheduler = Scheduler(None, cfg.alerts.sweep_every, clock=self.clock)
        self.health.add(self.scheduler.health)
        self.health.probes["plugins"] = self._plugins_health
        self.retention = Retention(
            self.repository,
            retention=cfg.privacy.retention,
            raw_mail_retention=cfg.privacy.raw_mail_retention,
            clock=self.clock,
        )
        # Daily, and a few minutes after each start (a process restarted daily would otherwise
        # never reach its first run).
        self.scheduler.add_job(
            self._retain, timedelta(days=1), "retention", first_after=timedelta(minutes=5)
        )
        if cfg.web.enabled:
            self._build_web()
        if self.poster is not None:
            self.poster.contributions = self.plugins  # root and digest lines
        self.plugins.host = Host(
            service=self.service,
            repository=self.repository,
            clock=self.clock,
            actions=self.actions,
            events=self.events,
            language=cfg.language,
            scheduler=self.scheduler,
            web_app=self.web.app if self.web is not None else None,
            announce=cfg.matrix is not None,
            timezone=cfg.alerts.tzinfo,
        )

    def _build_matrix(self) -> None:
        cfg = self.config
        m = cfg.matrix
        self.matrix = MatrixClient(
            MatrixSettings(
                homeserver=str(m.homeserver).rstrip("/"),
                user_id=m.user_id,
                password=m.password.get_secret_value() if m.password else None,
                access_token=m.access_token.get_secret_value() if m.access_token else None,
                device_name=m.device_name,
                store_path=m.store_path,
            )
        )
        self.rooms = QueueRooms(
            {q: queue.room for q, queue in cfg.tickets.queues.items()}, self.repository
        )
        # One registry for what chat understands and what `!help` lists.
        renderer = Renderer(cfg.language, cfg.tickets.prefix, cfg.alerts.tzinfo, self.actions)
        self.poster = ChatSender(
            self.repository,
            self.matrix,
            self.rooms,
            renderer,
            default_queue=cfg.tickets.default_queue,
            login=LoginLinks(cfg.web.root, cfg.web.login_link_ttl) if cfg.web.enabled else None,
            clock=self.clock,
            # No row given up because the homeserver was away for hours (exobot.matrix.catchup).
            retry=PatientRetry(CHAT_RETRY, lambda: self.matrix.unreachable),
            service=self.service,
        )
        self.bot = MatrixBot(
            self.matrix,
            self.rooms,
            self.service,
            self.repository,
            renderer,
            BotSettings(
                prefix=cfg.tickets.prefix,
                queues=frozenset(cfg.tickets.queues),
                operators=frozenset(m.operators),
                support_address=cfg.mail.address,
                web=cfg.web.enabled,
            ),
            wake_poster=self.poster.wake.set,
            direct_joined=self.poster.direct_joined,
            clock=self.clock,
            registry=self.actions,
        )
        # Chat names volunteers by their display names; tickets go to operators only.
        renderer.people = self.bot.names
        self.service.may_own = self.bot.is_operator
        self.bot.rooms_live = False  # until this instance leads and has synced
        self.operator_record = OperatorRecord(self.repository, self.bot)
        self.matrix.on_synced = self.operator_record.publish
        self.matrix.on_recovered = self._matrix_recovered
        sweep = AlertSweep(
            self.repository,
            self.service,
            digest_at=cfg.alerts.digest_at,
            timezone=cfg.alerts.tzinfo,
            clock=self.clock,
        )
        # The sweep's alerts and digest are for the queue rooms: it waits for chat (see
        # _matrix_loop); retention, housekeeping and plugins' jobs do not.
        self.scheduler = Scheduler(
            sweep, cfg.alerts.sweep_every, housekeeping=self._purge_web, wait_for_chat=True
        )
        self.matrix.health.clock = self.clock
        self.health.add(self.matrix.health)
        self.health.add(self.poster.health, "chat")
        self.metrics.watch_worker(self.poster)
        self.bot.on_command = self.metrics.observe_command

    def _watch_core(self) -> None:
        """Register the mail parts with the health registry and the metrics."""
        self.health.database_check = self._check_database
        self.health.add(self.intake.health)
        self.health.add(self.sender.health, "smtp")
        self.metrics.watch_intake(self.intake)
        self.metrics.watch_worker(self.sender)
        self.processor.on_parsed = self.metrics.observe_parse

    async def _check_database(self) -> None:
        """Raise unless the database answers; for SQLite, also unless its file is still there
        and readable (a pooled connection keeps working on a deleted or moved file)."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**READ_ONLY)
            await conn.exec_driver_sql("SELECT 1")
        url = self.config.database.url
        if is_sqlite(url):
            await asyncio.to_thread(_read_sqlite_header, url)

    def _plugins_health(self) -> dict:
        """The plugins' part of /healthz: off without plugins, failing when one is disabled."""
        if not self.config.plugins:
            return {"state": OFF, "last_success": None}
        started = self._plugins_started_at
        return {
            "state": FAILING if self.plugins.disabled else OK,
            "last_success": started.isoformat(timespec="seconds") if started else None,
            "running": self.plugins.enabled,
            "disabled": sorted(self.plugins.disabled),
        }

    def _build_web(self) -> None:
        cfg = self.config
        settings = WebSettings(
            root=cfg.web.root,
            secure=cfg.web.secure,
            prefix=cfg.tickets.prefix,
            queues=tuple(cfg.tickets.queues),
            default_queue=cfg.tickets.default_queue,
            language=cfg.language,
            timezone=cfg.alerts.tzinfo,
            session_ttl=cfg.web.session_ttl,
            login_link_ttl=cfg.web.login_link_ttl,
            support_address=cfg.mail.address,
            server_name=cfg.matrix.user_id.partition(":")[2] if cfg.matrix else "",
            trusted_proxies=cfg.web.proxy_networks,
        )
        context = WebContext(
            settings,
            self.repository,
            self.service,
            retry_mail=self._retry_mail,
            now=self.clock.now,
            actions=self.actions,
        )
        context.panels = self.plugins.panels
        if self.bot is not None:
            context.is_operator = self.bot.is_operator
            context.people = self.bot.names
            context.operators = self.bot.operators
            context.check_password = PasswordChecker(str(cfg.matrix.homeserver))
        self.web = WebServer(create_app(context), cfg.web.host, cfg.web.port)
        add_health_route(self.web.app, self.health)

    async def _retain(self) -> None:
        """One pass of the retention policy; a failure waits for the next day's pass."""
        try:
            await self.retention.run_once()
        except Exception:
            log.exception("retention pass failed")

    async def _purge_web(self) -> int:
        """Forget expired browser sessions and login links."""
        async with self.repository.connection() as conn:
            return await web_records.purge_expired(conn, self.clock.now())

    async def _retry_mail(self, inbound_id: int) -> str:
        """Process a quarantined mail again (the web's retry button)."""
        return await self.processor.retry(inbound_id)

    def _wake_worker(self, event: OutboxQueued) -> None:
        if event.kind == "mail":
            self.sender.wake.set()
        elif self.poster is not None:
            self.poster.wake.set()

    async def start(self) -> None:
        """Take the run lock (LockHeld: another exobot runs on this database), build, then
        start every worker as a task of this loop."""
        if self.run_lock is None:
            lock = RunLock(self.config.database.url)
            # Shared on PostgreSQL (several instances may serve one database); on SQLite the
            # lock file's flock is exclusive: a second run refuses before touching anything.
            await asyncio.to_thread(lock.acquire, True)
            self.run_lock = lock
        if self.repository is None:
            try:
                await self.build()
            except BaseException:
                self._release_run_lock()
                raise
        if self.web is not None:
            self.web.bind()  # a busy port stops the start with a clear line, before anything runs
        if self.config.metrics is not None and self.metrics_port is None:
            self._serve_metrics()
        await self.plugins.start()  # after the core is built, before any worker runs
        self._plugins_started_at = self.clock.now()
        if self.leadership is None:
            self.leadership = Leadership.for_database(self.config.database.url)
        leadership = self.leadership
        self.health.is_leader = lambda: leadership.is_leader
        self.metrics.watch_leadership(lambda: leadership.is_leader)
        self._tasks = [asyncio.create_task(self.metrics.watch_loop(), name="event-loop-lag")]
        if not is_sqlite(self.config.database.url) and self.run_lock is not None:
            # A restart of PostgreSQL ends the run lock's session: taken again at once, and
            # the instance stops when a restore took it meanwhile.
            self._tasks.append(asyncio.create_task(keep_run_lock(self.run_lock), name="run-lock"))
        if self.web is not None:
            self._tasks.append(asyncio.create_task(self.web.run(), name="web"))
        if self.operator_record is not None:
            self._tasks.append(asyncio.create_task(self.operator_record.follow(), name="operators"))
        if leadership.is_leader:
            self._start_leader_parts()  # SQLite: at once, as a lone instance always did
        else:
            for component in self._leader_components():
                component.enabled = False  # "off" on /healthz until this instance leads
        self._election_tasks = [  # in this order: stop() ends them one at a time
            asyncio.create_task(leadership.run(), name="leadership"),
            asyncio.create_task(self._lead(), name="leader-parts"),
        ]
        log.info(
            "exobot started: %s, mail %s, %s",
            self.config.database.url.split("://")[0],
            self.config.mail.address,
            "leading" if leadership.is_leader else "following (waiting for the leader lock)",
        )

    @property
    def tasks(self) -> list[asyncio.Task]:
        """Every task of this instance that lives as long as it runs (the leader's parts run
        inside "leader-parts", which ends when one of them does)."""
        return [*self._tasks, *self._election_tasks]

    def _leader_components(self) -> list:
        """The health components of the leader's parts (off while following)."""
        parts = [self.intake.health, self.sender.health]
        if self.matrix is not None:
            parts += [self.matrix.health, self.poster.health]
        return parts

    def _start_leader_parts(self) -> None:
        """This instance leads: fetch and process mail, deliver the outbox, run the Matrix
        client and the scheduled jobs (with chat, the alert sweep starts once Matrix is
        connected; retention and plugins' jobs do not wait for the homeserver)."""
        for component in self._leader_components():
            component.enabled = True
        self.scheduler.start()
        self._leader_tasks = [
            asyncio.create_task(self._process_loop(), name="mail-processor"),
            asyncio.create_task(self.sender.run(), name="mail-sender"),
            asyncio.create_task(self.intake.run(), name="imap-intake"),
        ]
        if self.matrix is not None:
            self._leader_tasks.append(asyncio.create_task(self._matrix_loop(), name="matrix"))
        self._see_other_processes()

    def _outbox_workers(self) -> list:
        """The mail worker, and the chat worker when Matrix is configured."""
        return [worker for worker in (self.sender, self.poster) if worker is not None]

    def _see_other_processes(self) -> None:
        """What another process queues (`exobot outbox retry`, `exobot privacy erase`; on
        PostgreSQL also a follower's web and API) is seen within OTHER_PROCESS_WAIT_SECONDS:
        on PostgreSQL the workers look for due rows that often, on an SQLite file a commit
        watch wakes them."""
        if not is_sqlite(self.config.database.url):
            for worker in self._outbox_workers():
                worker.idle_wait = OTHER_PROCESS_WAIT_SECONDS
            return
        watched = sqlite_file(self.config.database.url)
        if watched is not None:  # in memory: no other process can reach it
            watch = SqliteCommitWatch(watched, self._committed, OTHER_PROCESS_WAIT_SECONDS)
            self._leader_tasks.append(asyncio.create_task(watch.run(), name="commit-watch"))

    def _committed(self) -> None:
        """Something was committed to SQLite, maybe by another process: the outbox workers
        look for what is due now."""
        for worker in self._outbox_workers():
            worker.wake.set()

    async def _stop_leader_parts(self) -> None:
        """Stop the leader's parts (intake first, so nothing new comes in), each given
        STOP_TIMEOUT_SECONDS: cancelling closes the Matrix client, the IMAP session and the SMTP
        connection of a pass under way. Cut short itself (SIGTERM during a step-down), it still
        asks the rest to stop, and whatever has not ended is kept for stop() to wait for."""
        self.scheduler.pause()
        tasks, self._leader_tasks = self._leader_tasks, []
        try:
            await _cancel_all(reversed(tasks))
        finally:
            cancel(tasks)
            self._stopping += [task for task in tasks if not task.done()]
        self.chat_ready.clear()
        self.intake.connected.clear()
        for component in self._leader_components():
            component.waiting(False)  # a follower has no backlog of its own: never stalled
            component.enabled = False

    async def _lead(self) -> None:
        """Start the leader's parts whenever this instance is elected, stop them when it is
        deposed. A leader's part ending on its own ends this task (and so exobot, as before)."""
        leadership = self.leadership
        while True:
            await leadership.elected.wait()
            if not self._leader_tasks:
                self._start_leader_parts()
            deposed = asyncio.create_task(leadership.deposed.wait(), name="deposed")
            try:
                done, _ = await asyncio.wait(
                    [deposed, *self._leader_tasks], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                deposed.cancel()
            for task in done - {deposed}:
                error = None if task.cancelled() else task.exception()
                raise RuntimeError(f"{task.get_name()} ended: {error!r}") from error
            log.warning("stopping the leader's parts: another instance may lead now")
            await self._stop_leader_parts()

    async def _process_loop(self) -> None:
        """Process stored mail when intake stores some, and sweep now and then (CLI retries)."""
        while True:
            try:
                await self.processor.process_pending()
            except Exception:  # the database may be briefly unavailable; keep going
                log.exception("mail processing pass failed")
            self._mail_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._mail_arrived.wait(), PROCESSOR_SWEEP_SECONDS)

    async def _matrix_loop(self) -> None:
        """Connect to Matrix (retrying while the homeserver is away), join the queue rooms, then
        run the sync loop, the chat worker and the scheduler. Mail keeps flowing meanwhile."""
        backoff = 1.0
        self.matrix.health.waiting(True)  # until the first sync: unreachable for long is a stall
        while True:
            try:
                await self.matrix.connect()
                # From here the client's own rooms say who operates: catch_up() below handles
                # the commands said while exobot was away, with the rooms its sync brings.
                self.bot.rooms_live = True
                # Rooms first: what was said in them while exobot was away is handled by
                # catch_up(), which needs to know which rooms are queue rooms.
                await self.rooms.ensure_joined(self.matrix)
                await self.matrix.catch_up()
                break
            except MatrixLoginError:
                log.error("Matrix refused the bot's credentials: check the matrix section")
                raise
            except Exception as error:
                self.bot.stop_syncing()  # not synced: the last record says meanwhile
                self.matrix.health.failed()
                log.warning("cannot reach Matrix (%s); retrying in %.0f s", error, backoff)
                await self.matrix.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
        # This instance's own sync knows the rooms now: it records who operates for the
        # other instances.
        await self.operator_record.publish()
        if backoff > 1.0:  # the homeserver was away: what backed off meanwhile is due now
            await self._matrix_recovered()
        # An open queue room grants nobody operator rights: say so in the log and the room.
        await self.bot.warn_open_rooms()
        # So is a queue room that is not end-to-end encrypted (in the room once, ever).
        await self.bot.warn_unencrypted_rooms()
        workers = [
            asyncio.create_task(self.matrix.run(), name="matrix-sync"),
            asyncio.create_task(self.poster.run(), name="chat-sender"),
            asyncio.create_task(self._keep_rooms(), name="matrix-rooms"),
        ]
        self.scheduler.resume_chat_jobs()  # the other jobs run since this instance leads
        self.chat_ready.set()
        try:
            await asyncio.gather(*workers)
        finally:
            self.bot.stop_syncing()  # the record says who operates until the next sync
            self.operator_record.forget()
            # Until chat is ready again; a step-down paused every job already (and cancelled
            # those under way), and the other jobs resume when this instance leads again.
            self.scheduler.pause_chat_jobs()
            await cancel_and_wait(workers)  # a cancelled gather asked them already
            await self.matrix.close()

    async def _matrix_recovered(self) -> None:
        """The homeserver answers again after failing: chat rows that backed off while it was
        away (up to an hour) are made due now, in one statement, and the chat worker woken."""
        try:
            hurried = await hurry_chat(self.repository, self.clock.now())
        except Exception as error:  # the worker's own backoff still brings them, later
            log.warning("cannot make the waiting chat rows due: %s", error)
            return
        if hurried:
            log.info("Matrix is back: %d waiting chat rows are due now", hurried)
        if self.poster is not None:
            self.poster.wake.set()

    def _serve_metrics(self) -> None:
        """Serve the metrics on metrics.listen (a busy port: a clear line, nothing started)."""
        listen = self.config.metrics
        self.metrics.watch_database(create_sync_engine(self.config.database.url))
        try:
            self.metrics_port = self.metrics.serve(listen.host, listen.port)
        except OSError as error:
            raise WebListenError(
                f"metrics.listen: cannot listen on {listen.listen}: {error.strerror}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", listen.host, self.metrics_port)

    async def _keep_rooms(self) -> None:
        """Retry queue rooms that could not be joined at start (not created yet, no invite)."""
        while not await self.rooms.ensure_joined(self.matrix):
            await asyncio.sleep(ROOM_RETRY_SECONDS)

    async def stop(self) -> None:
        """Stop the plugins first, then intake (nothing new comes in), then the workers, then
        the database."""
        await self.plugins.stop()
        # The loop that starts the leader's parts first (none is started again), then those
        # parts while this instance still holds the leader lock, and only then the lock's
        # loop, which lets the lock go: the other instance leads once they have stopped, so
        # no two processes fetch and apply mail or open the Matrix session at once. Then the
        # web and the rest.
        election, self._election_tasks = self._election_tasks, []
        lock_loop, lead_loop = election[:1], election[1:]  # (see start())
        await _cancel_all(lead_loop)
        if self._leader_tasks:
            await self._stop_leader_parts()
        stopping, self._stopping = self._stopping, []
        await _cancel_all(stopping)
        await _cancel_all(lock_loop)
        if self.scheduler is not None:
            self.scheduler.stop()
        tasks, self._tasks = self._tasks, []
        await _cancel_all(reversed(tasks))
        if self.leadership is not None and self.leadership.lock is not None:
            await asyncio.to_thread(self.leadership.lock.release)  # at once, not in the background
        self.metrics.close()
        self.metrics_port = None
        if self.processor is not None:
            await self.processor.parser.close()  # a parse still running is refused, not waited
        if self.repository is not None:
            await self.repository.close()
        self._release_run_lock()
        log.info("exobot stopped")

    def _release_run_lock(self) -> None:
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None

    async def run_until_signal(self) -> int:
        """Run until SIGTERM or SIGINT, then stop cleanly; returns the exit status (1 when a
        part gave up for good, e.g. Matrix refused the bot's credentials)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        waiter = asyncio.create_task(stop.wait(), name="signals")
        status = 0
        try:
            done, _ = await asyncio.wait(
                [waiter, *self.tasks], return_when=asyncio.FIRST_COMPLETED
            )  # a leader's part ending ends the "leader-parts" task
            for task in done - {waiter}:
                status = 1
                error = None if task.cancelled() else task.exception()
                log.critical("%s ended: %r; stopping exobot", task.get_name(), error)
        finally:
            waiter.cancel()
            log.info("stopping")
            await self.stop()
        return status


async def _cancel_all(tasks) -> None:  # noqa: ANN001 - an iterable of tasks
    """Cancel each task in turn (not again when it is stopping already) and wait for it, up to
    STOP_TIMEOUT_SECONDS; one still running then is asked once more and given as long again
    (exobot.cancelling): a part surviving its stop would go on doing the leader's work."""
    for task in tasks:
        try:
            await asyncio.wait_for(
                cancel_and_wait([task], grace=STOP_TIMEOUT_SECONDS), 2 * STOP_TIMEOUT_SECONDS
            )
        except TimeoutError:
            log.error(
                "%s did not stop within %s s: %s",
                task.get_name(),
                2 * STOP_TIMEOUT_SECONDS,
                task.get_stack(),
            )
