"""The running test stack: Dovecot (IMAP + LMTP), the SMTP relay, Synapse and, optionally,
a private PostgreSQL cluster.

Typical use (tests, demo):

    stack = Stack.start(Path("/tmp/st"), base_port=20000, postgres=True)
    url = stack.postgres_url("exobot_t1")  # a fresh database
    stack.send_mail(raw, "member@example.org", ["suport@example.org"])
    raw = stack.wait_for_mail("suport@example.org", lambda m: b"Subject: hi" in m)
    alice = stack.register_matrix_user("alice", "pw")
    stack.stop()

`Stack.load(dir)` re-attaches to a stack started elsewhere (CLI `python -m devstack start`).
"""

from __future__ import annotations

import hashlib
import hmac
import imaplib
import json
import os
import re
import secrets
import shutil
import signal
import smtplib
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from devstack import postgres as pg
from devstack.config import (
    MAIL_GID,
    MAIL_UID,
    DovecotParams,
    SynapseParams,
    dovecot_version,
    render_dovecot_conf,
    render_synapse_config,
)
from devstack.paths import PROJECT_PYTHON, PROJECT_ROOT, SYNAPSE_PYTHON
from devstack.procs import (
    HOST,
    StackError,
    banner_check,
    http_check,
    pid_matches,
    port_is_free,
    spawn,
    stop_pid,
    tls_banner_check,
    wait_ready,
)
from devstack.tls import CERT_FILE, KEY_FILE, ensure_certificates

DOMAIN = "example.org"
PASSWORD = "secret"
SYNAPSE_SERVER_NAME = "localhost"
STACK_FILE = "stack.json"
DEFAULT_BASE_PORT = 20000

# Port = base + offset. The offsets differ modulo 10, so stacks whose bases are 10 apart
# never collide (see find_free_base_port). That is why the TLS ports are not 993 and 465:
# those end in 3 and 5 like IMAP's 143 and SMTP's 25.
PORT_OFFSETS = {
    "imap": 143,
    "lmtp": 24,
    "smtp": 25,
    "synapse": 8008,
    "postgres": 432,
    "imaps": 991,  # IMAP with implicit TLS
    "smtps": 466,  # SMTP with implicit TLS ("submissions")
}
# Services that only run when asked for (their port is only required free then).
OPTIONAL_SERVICES = ("synapse", "postgres")

READY_TIMEOUT = 30.0


def ports_for(base_port: int) -> dict[str, int]:
    """The ports of a stack with this base port (every service, optional ones included)."""
    return {name: base_port + offset for name, offset in PORT_OFFSETS.items()}


def find_free_base_port(start: int, step: int = 10, attempts: int = 200) -> int:
    """First base port from `start` (by `step`) whose ports are all free."""
    for base in range(start, start + step * attempts, step):
        if all(port_is_free(port) for port in ports_for(base).values()):
            return base
    raise StackError(f"no free base port from {start} in {attempts} attempts")


def _allow_traversal(path: Path) -> None:
    """Give "others" search (x) permission on `path` and its ancestors.

    Dovecot's mail processes run as uid 65534 and must reach the mail homes under the
    stack dir; pytest's tmp dirs (and mkdtemp) are 0700. Only x is added: nobody can list.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@dataclass
class Stack:
    """A running stack, described by (and persisted to) DIR/stack.json."""

    dir: Path
    imap_port: int
    lmtp_port: int
    smtp_port: int
    synapse_url: str | None = None
    synapse_server_name: str | None = None
    registration_shared_secret: str | None = None
    domain: str = DOMAIN
    password: str = PASSWORD
    host: str = HOST
    dovecot_version: str = ""
    pids: dict[str, int | None] = field(default_factory=dict)
    # PostgreSQL (None when the stack runs without it): superuser, trust auth on 127.0.0.1.
    postgres_port: int | None = None
    postgres_user: str | None = None
    postgres_socket_dir: str | None = None
    postgres_version: str = ""
    postgres_bindir: str | None = None
    # TLS (None in a stack.json from before TLS): IMAP and SMTP offer STARTTLS on their
    # plain ports and implicit TLS on these, with a certificate for localhost and 127.0.0.1
    # signed by the CA in `ca_file` (DIR/tls/ca.pem; e.g. SSL_CERT_FILE for clients).
    imaps_port: int | None = None
    smtps_port: int | None = None
    ca_file: str | None = None

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        dir: Path,
        base_port: int = DEFAULT_BASE_PORT,
        synapse: bool = True,
        timeout: float = READY_TIMEOUT,
        postgres: bool = False,
    ) -> Stack:
        """Write all configs under `dir`, start every server, wait until each answers.

        With `postgres`, a private PostgreSQL cluster in DIR/postgres listens on base+432
        (see `postgres_url`); it needs Debian's `postgresql` (`python -m devstack install`).

        Raises StackError (with the log tail) when a server does not come up; the servers
        already started are stopped again in that case.
        """
        dir = Path(dir).resolve()
        ports = ports_for(base_port)
        wanted = {"synapse": synapse, "postgres": postgres}
        busy = [
            f"{name}={port}"
            for name, port in ports.items()
            if wanted.get(name, True) and not port_is_free(port)
        ]
        bindir = pg.find_bindir() if postgres else None
        if postgres and bindir is None:
            raise StackError(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                "run `python -m devstack install` first"
            )
        if (dir / STACK_FILE).exists() and cls.load(dir).is_running():
            raise StackError(f"a stack is already running in {dir}: stop it first")
        if busy:
            raise StackError(f"ports already in use: {', '.join(busy)}")
        (dir / "logs").mkdir(parents=True, exist_ok=True)
        ca_file, _cert, _key = ensure_certificates(dir / "tls")  # once per stack dir
        stack = cls(
            dir=dir,
            imap_port=ports["imap"],
            lmtp_port=ports["lmtp"],
            smtp_port=ports["smtp"],
            dovecot_version=dovecot_version(),
            imaps_port=ports["imaps"],
            smtps_port=ports["smtps"],
            ca_file=str(ca_file),
        )
        if synapse:
            stack.synapse_url = f"http://{HOST}:{ports['synapse']}"
            stack.synapse_server_name = SYNAPSE_SERVER_NAME
            stack.registration_shared_secret = stack._secret("registration_shared_secret")
        if postgres:
            stack.postgres_port = ports["postgres"]
            stack.postgres_user = pg.superuser()
            stack.postgres_bindir = str(bindir)
            stack.postgres_version = pg.server_version(bindir)
        try:
            stack._start_all(synapse, timeout)
        except BaseException:
            stack.stop()
            raise
        return stack

    @classmethod
    def load(cls, dir: Path) -> Stack:
        """Re-attach to a stack from its DIR/stack.json (raises FileNotFoundError)."""
        data = json.loads((Path(dir) / STACK_FILE).read_text())
        data["dir"] = Path(data["dir"])
        return cls(**data)

    def is_running(self) -> bool:
        """True when every service recorded in stack.json is still alive."""
        return bool(self.pids) and all(
            pid is not None and pid_matches(pid, self._pid_token(name))
            for name, pid in self.pids.items()
        )

    def status(self) -> dict[str, bool]:
        """Service name -> alive, for each service of this stack."""
        return {
            name: pid is not None and pid_matches(pid, self._pid_token(name))
            for name, pid in self.pids.items()
        }

    def stop(self) -> None:
        """Stop every service (only the PIDs in stack.json and their process groups)."""
        # SMTP first: it depends on LMTP, and a test's last mail should not hit a half-down
        # Dovecot.
        for name in ("smtp", "synapse", "dovecot", "postgres"):
            self._stop_one(name)
        self._remove_temp_socket_dir()
        self._save()

    def kick_imap(self, user: str) -> None:
        """Drop every IMAP connection of `user` (`doveadm kick`), as a server restart would."""
        subprocess.run(
            ["doveadm", "-c", str(self.dir / "dovecot" / "dovecot.conf"), "kick", user],
            check=True,
            capture_output=True,
        )

    def stop_smtp(self) -> None:
        """Stop only the SMTP relay (to simulate an outage); its port is freed."""
        self.stop_service("smtp")

    def start_smtp(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the SMTP relay again on the same port (after stop_smtp)."""
        self.start_service("smtp", timeout)

    # Restartable services and the signal/grace each is stopped with (see stop()).
    RESTARTABLE = ("smtp", "dovecot", "synapse", "postgres")

    def stop_service(self, name: str) -> None:
        """Stop one service (to simulate an outage or a restart); its port is freed and its
        data (mailboxes, Synapse's and PostgreSQL's databases) is kept for start_service."""
        if name not in self.RESTARTABLE:
            raise StackError(f"unknown service {name!r} (one of {', '.join(self.RESTARTABLE)})")
        self._stop_one(name)
        if name == "postgres":
            self._remove_temp_socket_dir()
        self._save()

    def _stop_one(self, name: str) -> None:
        """Stop one service by its recorded PID (checked against its command line)."""
        pid = self.pids.get(name)
        if pid:
            if name == "postgres":
                # SIGINT to the postmaster alone is pg_ctl's "fast" shutdown: it ends its
                # backends (clients see their connections end) and exits cleanly; SIGKILL to
                # the group only as a fallback.
                stop_pid(
                    pid, self._pid_token(name), grace=10.0,
                    first_signal=signal.SIGINT, signal_group=False,
                )  # fmt: skip
            else:
                stop_pid(pid, self._pid_token(name))
        self.pids[name] = None

    def start_service(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        """Start one service again on its ports, with its kept data, and wait until it
        answers (as at Stack.start); a service still running is left alone."""
        if name not in self.RESTARTABLE:
            raise StackError(f"unknown service {name!r} (one of {', '.join(self.RESTARTABLE)})")
        pid = self.pids.get(name)
        if pid and pid_matches(pid, self._pid_token(name)):
            return
        if name == "smtp":
            self._start_smtp(timeout)
        elif name == "dovecot":
            self._start_dovecot(timeout)
        elif name == "synapse":
            if not self.synapse_url:
                raise StackError("this stack runs without Synapse")
            self._start_synapse(None, timeout)
        else:
            if self.postgres_port is None:
                raise StackError("this stack runs without PostgreSQL")
            self._start_postgres(timeout)
        self._save()

    def restart_service(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        """stop_service then start_service: a server restart as an upgrade would do it."""
        self.stop_service(name)
        self.start_service(name, timeout)

    # ------------------------------------------------------------------ internals

    def _pid_token(self, name: str) -> str:
        """A string unique to this stack found in the service's command line.

        Checked before signalling a PID read from stack.json, so that neither a process
        that reused the PID nor another stack's server is ever hit.
        """
        if name == "smtp":
            return f"devstack.smtp_relay --port {self.smtp_port} "
        if name == "postgres":
            # The postmaster keeps its command line: `postgres -D DIR/postgres/data -p N ...`.
            return f"{self._postgres_data()} -p {self.postgres_port} "
        config = {"dovecot": "dovecot/dovecot.conf", "synapse": "synapse/homeserver.yaml"}
        return str(self.dir / config[name])

    def _log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def _secret(self, name: str) -> str:
        """A random secret kept in DIR, so a restarted stack keeps its Synapse data valid."""
        path = self.dir / "synapse" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def _save(self) -> None:
        data = asdict(self)
        data["dir"] = str(self.dir)
        tmp = self.dir / (STACK_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.dir / STACK_FILE)  # atomic: readers never see half a file

    def _start_all(self, synapse: bool, timeout: float) -> None:
        # Key generation (a few seconds of Python imports) overlaps the mail servers' start.
        keygen = self._synapse_keygen() if synapse else None
        try:
            self._start_services(keygen, synapse, timeout)
        finally:
            if keygen is not None and keygen.poll() is None:
                keygen.kill()  # only still running when another service failed
                keygen.wait()
        self._save()

    def _start_services(
        self, keygen: subprocess.Popen | None, synapse: bool, timeout: float
    ) -> None:
        self._start_dovecot(timeout)
        self._start_smtp(timeout)
        if self.postgres_port is not None:
            self._start_postgres(timeout)
        if synapse:
            self._start_synapse(keygen, timeout)

    # Dovecot

    def _start_dovecot(self, timeout: float) -> None:
        dovecot = self._spawn_dovecot()
        wait_ready(
            "dovecot IMAP",
            dovecot,
            banner_check(self.imap_port, "* OK"),
            self._log("dovecot"),
            timeout,
        )
        if self.imaps_port:
            wait_ready(
                "dovecot IMAPS",
                dovecot,
                tls_banner_check(self.imaps_port, "* OK", self.ca_file),
                self._log("dovecot"),
                timeout,
            )
        wait_ready(
            "dovecot LMTP",
            dovecot,
            banner_check(self.lmtp_port, "220"),
            self._log("dovecot"),
            timeout,
        )

    def _spawn_dovecot(self) -> subprocess.Popen:
        base = self.dir / "dovecot"
        mail_root = self.dir / "mail"
        for directory in (base / "base", base / "state", mail_root):
            directory.mkdir(parents=True, exist_ok=True)
        os.chown(mail_root, MAIL_UID, MAIL_GID)
        _allow_traversal(mail_root)
        params = DovecotParams(
            run_dir=base,
            log_file=self._log("dovecot"),
            mail_root=mail_root,
            imap_port=self.imap_port,
            lmtp_port=self.lmtp_port,
            password=self.password,
        )
        if self.imaps_port:
            params = replace(
                params,
                imaps_port=self.imaps_port,
                ssl_cert=self._tls_dir() / CERT_FILE,
                ssl_key=self._tls_dir() / KEY_FILE,
            )
        conf = base / "dovecot.conf"
        conf.write_text(render_dovecot_conf(params, self.dovecot_version))
        proc = spawn(["dovecot", "-F", "-c", str(conf)], self._log("dovecot"))
        self.pids["dovecot"] = proc.pid
        return proc

    # SMTP relay

    def _start_smtp(self, timeout: float) -> None:
        cmd = [
            str(PROJECT_PYTHON),
            "-m",
            "devstack.smtp_relay",
            "--port",
            str(self.smtp_port),
            "--lmtp-port",
            str(self.lmtp_port),
        ]
        if self.smtps_port:
            cmd += [
                "--smtps-port",
                str(self.smtps_port),
                "--tls-cert",
                str(self._tls_dir() / CERT_FILE),
                "--tls-key",
                str(self._tls_dir() / KEY_FILE),
            ]
        # cwd = project root so that `-m devstack.smtp_relay` resolves without installing.
        proc = spawn(cmd, self._log("smtp"), cwd=PROJECT_ROOT)
        self.pids["smtp"] = proc.pid
        wait_ready(
            "SMTP relay", proc, banner_check(self.smtp_port, "220"), self._log("smtp"), timeout
        )
        if self.smtps_port:
            wait_ready(
                "SMTP relay (TLS)",
                proc,
                tls_banner_check(self.smtps_port, "220", self.ca_file),
                self._log("smtp"),
                timeout,
            )

    def _tls_dir(self) -> Path:
        return self.dir / "tls"

    # PostgreSQL

    def _postgres_data(self) -> Path:
        return self.dir / "postgres" / "data"

    def _start_postgres(self, timeout: float) -> None:
        """initdb (first time only) as the `postgres` user, then pg_ctl -w start."""
        base = self.dir / "postgres"
        bindir = Path(self.postgres_bindir)
        sockets = pg.socket_dir(base, self.postgres_port)
        self.postgres_socket_dir = str(sockets)
        log = self._log("postgres")
        pg.prepare(base, self._postgres_data(), sockets, log)
        _allow_traversal(base)  # pytest's 0700 tmp dirs: the postgres user must reach DIR
        init_seconds = pg.init_cluster(bindir, self._postgres_data(), log, timeout)
        pid, start_seconds = pg.start_cluster(
            bindir, self._postgres_data(), self.postgres_port, sockets, log, timeout
        )
        self.pids["postgres"] = pid
        with open(log, "a") as out:
            out.write(f"[devstack] initdb {init_seconds:.2f}s, pg_ctl start {start_seconds:.2f}s\n")

    def _remove_temp_socket_dir(self) -> None:
        # Only the mkdtemp fallback of pg.socket_dir lives outside DIR.
        if self.postgres_socket_dir and not Path(self.postgres_socket_dir).is_relative_to(self.dir):
            shutil.rmtree(self.postgres_socket_dir, ignore_errors=True)

    def postgres_url(self, dbname: str | None = None) -> str:
        """Create a fresh database in the stack's PostgreSQL and return its SQLAlchemy URL,
        `postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME` (a random name when None).

        Raises StackError when the stack runs without PostgreSQL, and psycopg's
        DuplicateDatabase (or StackError with createdb) when the database already exists.
        """
        if self.postgres_port is None:
            raise StackError("this stack runs without PostgreSQL (start it with postgres=True)")
        dbname = dbname or f"exobot_{secrets.token_hex(6)}"
        bindir = Path(self.postgres_bindir) if self.postgres_bindir else None
        pg.create_database(bindir, self.postgres_user, self.postgres_port, dbname)
        return pg.url(self.postgres_user, self.postgres_port, dbname)

    # Synapse

    def _synapse_config(self) -> Path:
        data_dir = self.dir / "synapse"
        data_dir.mkdir(parents=True, exist_ok=True)
        params = SynapseParams(
            data_dir=data_dir,
            port=int(self.synapse_url.rsplit(":", 1)[1]),
            server_name=self.synapse_server_name,
            registration_shared_secret=self.registration_shared_secret,
            macaroon_secret_key=self._secret("macaroon_secret_key"),
        )
        path = data_dir / "homeserver.yaml"
        path.write_text(render_synapse_config(params))
        return path

    def _synapse_cmd(self, config: Path) -> list[str]:
        if not SYNAPSE_PYTHON.exists():
            raise StackError(
                f"Synapse is not installed ({SYNAPSE_PYTHON} missing): "
                "run `python -m devstack install` first"
            )
        return [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(config)]

    def _synapse_keygen(self) -> subprocess.Popen | None:
        """Start `--generate-keys` unless the signing key exists (returns None then)."""
        config = self._synapse_config()
        cmd = self._synapse_cmd(config)
        if (self.dir / "synapse" / "signing.key").exists():
            return None
        return spawn([*cmd, "--generate-keys"], self._log("synapse"), cwd=config.parent)

    def _start_synapse(self, keygen: subprocess.Popen | None, timeout: float) -> None:
        try:
            if keygen is not None and keygen.wait(timeout) != 0:
                raise StackError(f"synapse --generate-keys failed; see {self._log('synapse')}")
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"synapse --generate-keys hung; see {self._log('synapse')}") from exc
        config = self.dir / "synapse" / "homeserver.yaml"
        proc = spawn(self._synapse_cmd(config), self._log("synapse"), cwd=config.parent)
        self.pids["synapse"] = proc.pid
        wait_ready(
            "synapse",
            proc,
            http_check(f"{self.synapse_url}/_matrix/client/versions"),
            self._log("synapse"),
            timeout,
        )

    # ------------------------------------------------------------------ mail helpers

    def address(self, local_part: str) -> str:
        """`local_part@example.org`."""
        return f"{local_part}@{self.domain}"

    def send_mail(
        self, raw: bytes, mail_from: str, rcpt_to: list[str]
    ) -> dict[str, tuple[int, bytes]]:
        """Send through the SMTP relay; return the refused recipients (smtplib semantics).

        Line endings are normalised to CRLF as aiosmtplib does (smtplib does not for
        bytes, and the relay, like strict MTAs, refuses lines over 1000 bytes).

        Raises smtplib.SMTPRecipientsRefused when every recipient is refused.
        """
        with smtplib.SMTP(self.host, self.smtp_port, timeout=60) as smtp:
            return smtp.sendmail(mail_from, rcpt_to, _crlf(raw))

    def deliver_lmtp(self, raw: bytes, rcpt: str, mail_from: str = "") -> None:
        """Deliver straight into a mailbox with Dovecot's LMTP (bypassing SMTP)."""
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=60) as lmtp:
            lmtp.sendmail(mail_from, [rcpt], _crlf(raw))

    def imap(self, user: str) -> imaplib.IMAP4:
        """A logged-in imaplib connection for `user` (caller closes it: use `with`)."""
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=30)
        conn.login(user, self.password)
        return conn

    def fetch_all(self, user: str, folder: str = "INBOX") -> list[tuple[int, bytes]]:
        """Every message in `folder` as (UID, raw bytes), oldest first.

        A fresh connection each call (so no stale view). BODY.PEEK keeps \\Seen unset, so
        reading here never changes what the bot sees.
        """
        with self.imap(user) as conn:
            _check(conn.select(_quote(folder), readonly=True), f"SELECT {folder}")
            status, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            _check((status, data), "UID FETCH")
        return _parse_fetch(data)

    def wait_for_mail(
        self,
        user: str,
        predicate: Callable[[bytes], bool] = lambda raw: True,
        timeout: float = 10.0,
        folder: str = "INBOX",
    ) -> bytes:
        """Poll `folder` until a message satisfies `predicate`; return its raw bytes.

        Raises TimeoutError listing how many messages were seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            messages = self.fetch_all(user, folder)
            for _uid, raw in messages:
                if predicate(raw):
                    return raw
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no matching mail for {user} in {folder} after {timeout}s "
                    f"({len(messages)} message(s) there)"
                )
            time.sleep(0.1)

    # ---------------------------------------------------------------- matrix helpers

    def register_matrix_user(
        self, name: str, password: str, admin: bool = False, exist_ok: bool = False
    ) -> dict:
        """Create a Synapse user through the shared-secret admin API.

        Returns Synapse's answer: user_id, access_token, device_id, home_server. With
        `exist_ok`, an existing user is logged in instead (same keys in the answer).
        """
        if not self.synapse_url:
            raise StackError("this stack runs without Synapse")
        url = f"{self.synapse_url}/_synapse/admin/v1/register"
        nonce = _http_json("GET", url)["nonce"]
        # HMAC-SHA1 of the NUL-separated fields (no trailing NUL), keyed by the secret.
        message = "\x00".join((nonce, name, password, "admin" if admin else "notadmin"))
        mac = hmac.new(self.registration_shared_secret.encode(), message.encode(), hashlib.sha1)
        body = {
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        try:
            return _http_json("POST", url, body)
        except urllib.error.HTTPError as exc:
            if exist_ok and exc.code == 400 and b"M_USER_IN_USE" in exc.read():
                return self.login_matrix_user(name, password)
            raise

    def login_matrix_user(self, name: str, password: str) -> dict:
        """Password login; returns user_id, access_token, device_id, home_server."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": name},
            "password": password,
        }
        return _http_json("POST", f"{self.synapse_url}/_matrix/client/v3/login", body)


# ---------------------------------------------------------------------- small helpers


def _http_json(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _crlf(raw: bytes) -> bytes:
    """Bare LF or CR -> CRLF (what `bytes(EmailMessage)` lacks and SMTP requires)."""
    return re.sub(rb"\r\n|\n|\r", b"\r\n", raw)


def _quote(mailbox: str) -> str:
    # imaplib sends arguments verbatim: quote names with spaces or specials.
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result: tuple[str, list], what: str) -> None:
    status, data = result
    if status != "OK":
        raise imaplib.IMAP4.error(f"{what} failed: {status} {data}")


def _parse_fetch(data: list) -> list[tuple[int, bytes]]:
    """imaplib FETCH data -> [(uid, raw)]: literals come as (b'1 (UID 5 BODY[] {n}', raw)."""
    messages = []
    for item in data:
        if not isinstance(item, tuple):
            continue  # the b')' closing each message, or None for an empty mailbox
        header, raw = item
        words = header.decode().replace("(", " ").split()
        uid = int(words[words.index("UID") + 1])
        messages.append((uid, raw))
    # imaplib returns `1:*` in server order; be explicit anyway.
    return sorted(messages)
