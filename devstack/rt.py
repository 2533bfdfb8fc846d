"""A real Request Tracker (Debian's RT 5.0 or RT 4.4) on loopback, for the importer's tests.

`RtServer.start(workdir, version=5, port=...)` gives each server its own SQLite database (a
copy of a pristine one built once per RT version under .stack/rt/), its own site config
(RT_SITE_CONFIG / RT_SITE_CONFIG_DIR: Debian's /etc config is never read), its own Mason
cache, and RT's standalone server on 127.0.0.1:PORT. What RT mails out goes through a small
sendmail-compatible script ($MailCommand 'sendmailpipe') into WORKDIR/sent/, one file per
message: `server.sent_mail()`. Several servers (and several pytest processes) can run at once.

Login: root / password (RT's initial data). Queues: "General" and "Altes"; Everyone may
create, reply to and comment on tickets by mail (the mail gateway feeds tickets like an MTA).

RT behaviour notes, observed on these servers (RT 5.0.3 and 4.4.6, Debian 12):

- Merge (`ticket/6/merge/7`): the merged ticket keeps its row with EffectiveId = 7 and its
  own Status. Two transactions per merge, both Type "AddLink", Field "MergedInto", NewValue
  "fsck.com-rt://ORG/ticket/7": one on the merged ticket, one on the survivor. From then on
  RT shows the survivor for the merged number: REST 1.0 `ticket/6/show` answers with
  `id: ticket/7` (the survivor's fields: compare the id with the number asked for), REST 2
  `ticket/6` answers `"id": 7` with `EffectiveId` 7. The survivor's history (REST 1.0
  `ticket/7/history`, REST 2 `ticket/7/history`) includes the merged tickets' transactions
  (their Create, EmailRecord, ...) in id order; `ticket/6/history` gives the same list.
- Incoming mail (rt-mailgate): a "Create" or "Correspond"/"Comment" transaction whose first
  attachment has the mail's Message-ID (Attachments.MessageId; in REST its Headers carry
  `Message-ID:`). Staff replies and comments made through REST have no Message-ID.
- Outgoing mail (auto-reply on create, staff correspondence to requestors, owner
  notifications) is recorded as an "EmailRecord" transaction ("Outgoing email recorded by
  RT_System"), Data = the Message-ID RT sent with angle brackets, e.g.
  `<rt-5.0.3+dfsg-3~deb12u6-17440-1795861208-1508.7-5-0@example.org>`; the same message is
  in `sent_mail()` with that Message-ID. Comments are not mailed to requestors.
- Cc addresses of an incoming mail do not become ticket Cc ($ParseNewMessageForTicketCcs is
  off by default): the seed adds its Cc through REST.
- rt-mailgate prints only "ok": the seed reads ticket numbers back through REST (a fresh
  server numbers tickets 1.. in creation order).
- Times: RT stores UTC; REST 1.0 prints them in $Timezone, which these servers set to UTC
  (e.g. `Created: Sat Nov 28 10:20:07 2026`); REST 2 prints ISO 8601 with Z.
- Deleted tickets keep their row and answer REST 1.0 show with `Status: deleted`.
- REST 2 is built into RT 5 only; Debian has no package of the RT 4.4 REST2 extension, so
  `RtServer.rest2` is None on RT 4.4 and REST 2 is tested on RT 5 alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.paths import PROJECT_ROOT
from devstack.procs import HOST, StackError, http_check, stop_pid, wait_ready

RT_ROOT = PROJECT_ROOT / ".stack" / "rt"
ROOT_USER = "root"
ROOT_PASSWORD = "password"
SECOND_QUEUE = "Altes"
# RT takes a few seconds to compile its Mason components on the first request.
START_SECONDS = 120.0
MAILGATE_SECONDS = 120.0
WORKERS = 3


def rt_dir(version: int) -> Path:
    """Where Debian installs RT `version` (5 or 4)."""
    return Path(f"/usr/share/request-tracker{version}")


def rt_installed(version: int) -> bool:
    """True when Debian's RT `version` with its standalone server and SQLite driver is here."""
    return (
        (rt_dir(version) / "libexec" / "rt-server").exists()
        and Path(f"/usr/sbin/rt-setup-database-{version}").exists()
        and Path(f"/usr/bin/rt-mailgate-{version}").exists()
    )


def rt_package_version(version: int) -> str:
    """The installed Debian version of request-tracker{version} ('' when not installed)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", f"request-tracker{version}"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


# Appends each message RT sends to DIR (its first argument), one file per message, written
# under a temporary name and renamed so a reader never sees half a message. RT passes
# sendmail's options (-oi -t -f ...) after it: ignored.
SENDMAIL_SCRIPT = """#!/bin/sh
dir="$1"
name="$(date +%s%N)-$$"
cat > "$dir/.$name.tmp" && mv "$dir/.$name.tmp" "$dir/$name.eml"
"""

# Staff account of the seed (devstack/rt_seed.py): a privileged user with a non-ASCII real name.
STAFF_USER = "nuria"
STAFF_PASSWORD = "staffpass"
STAFF_EMAIL = "nuria@example.org"

# Queues, a staff user and rights added to RT's initial data: anyone may open, reply to and
# comment on tickets by mail (what rt-mailgate needs), as a public helpdesk is configured;
# the staff user may do everything (SuperUser keeps the test set-up short).
INITIAL_DATA = f"""use utf8;
@Users = (
    {{ Name => '{STAFF_USER}', Password => '{STAFF_PASSWORD}', EmailAddress => '{STAFF_EMAIL}',
       RealName => 'Núria Ferrer', Privileged => 1 }},
);
@Queues = (
    {{ Name => '{SECOND_QUEUE}', Description => 'Second queue for the importer tests',
       CorrespondAddress => 'altes@example.org', CommentAddress => 'altes-comment@example.org' }},
);
@ACL = (
    (map {{ {{ GroupDomain => 'SystemInternal', GroupType => 'Everyone', Right => $_ }} }}
        qw(CreateTicket ReplyToTicket CommentOnTicket SeeQueue ShowTicket)),
    {{ UserId => '{STAFF_USER}', Right => 'SuperUser' }},
);
1;
"""


def _perl_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def site_config(
    *,
    version: int,
    database: Path,
    port: int,
    rtname: str,
    var_dir: Path,
    sendmail: Path,
    sent_dir: Path,
) -> str:
    """The RT_SiteConfig.pm of one test server."""
    settings = {
        "$rtname": _perl_string(rtname),
        "$Organization": _perl_string("example.org"),
        "$Timezone": _perl_string("UTC"),
        "$CorrespondAddress": _perl_string("rt@example.org"),
        "$CommentAddress": _perl_string("rt-comment@example.org"),
        "$OwnerEmail": _perl_string("root@example.org"),
        "$DatabaseType": _perl_string("SQLite"),
        "$DatabaseName": _perl_string(str(database)),
        "$DatabaseHost": _perl_string(""),
        "$DatabaseUser": _perl_string(""),
        "$DatabasePassword": _perl_string(""),
        "$WebDomain": _perl_string(HOST),
        "$WebPort": str(port),
        "$WebPath": _perl_string(""),
        "$WebBaseURL": _perl_string(f"http://{HOST}:{port}"),
        "$MasonDataDir": _perl_string(str(var_dir / "mason_data")),
        "$MasonSessionDir": _perl_string(str(var_dir / "session_data")),
        "$LogToSTDERR": _perl_string("warning"),
        "$LogToSyslog": "undef",
        "$LogToFile": "undef",
        "$MailCommand": _perl_string("sendmailpipe"),
        "$SendmailPath": _perl_string(str(sendmail)),
        "$SendmailArguments": _perl_string(str(sent_dir)),
        "$SendmailBounceArguments": _perl_string(""),
        # Every address of the test domains is RT's own, so RT never mails itself.
        "$RTAddressRegexp": _perl_string(r"^(rt|rt-comment|altes|altes-comment)\@example\.org$"),
        # The importer talks to RT from a test, not a browser.
        "$RestrictReferrer": "0",
        "$WebSecureCookies": "0",
    }
    lines = ["# Generated by devstack/rt.py for one test server.", "use utf8;"]
    lines += [f"Set({name}, {value});" for name, value in settings.items()]
    lines.append("1;")
    return "\n".join(lines) + "\n"


def _environment(config: Path, config_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RT_SITE_CONFIG"] = str(config)
    # An empty directory: Debian's /etc/request-tracker*/RT_SiteConfig.d (its database,
    # logging, addresses) must not apply to a test server.
    env["RT_SITE_CONFIG_DIR"] = str(config_dir)
    env.setdefault("LANG", "C.UTF-8")
    return env


def _write_config(directory: Path, version: int, database: Path, port: int, rtname: str) -> dict:
    """Write the config, the sendmail script and the directories of one RT instance under
    `directory`; the environment its commands run with."""
    for sub in ("etc", "etc/RT_SiteConfig.d", "var/mason_data", "var/session_data", "sent"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    sendmail = directory / "sendmail"
    sendmail.write_text(SENDMAIL_SCRIPT)
    sendmail.chmod(0o755)
    config = directory / "etc" / "RT_SiteConfig.pm"
    config.write_text(
        site_config(
            version=version,
            database=database,
            port=port,
            rtname=rtname,
            var_dir=directory / "var",
            sendmail=sendmail,
            sent_dir=directory / "sent",
        )
    )
    return _environment(config, directory / "etc" / "RT_SiteConfig.d")


def pristine_database(version: int) -> Path:
    """RT `version`'s initialised SQLite database (schema, core and initial data, the second
    queue and the rights for mail), built once per installed RT package version."""
    package = rt_package_version(version) or "unknown"
    # A change to INITIAL_DATA makes a new pristine database.
    digest = hashlib.sha256(INITIAL_DATA.encode()).hexdigest()[:10]
    target = RT_ROOT / f"pristine-rt{version}-{package}-{digest}.db"
    if target.exists():
        return target
    RT_ROOT.mkdir(parents=True, exist_ok=True)
    # Built in a private directory and renamed: parallel pytest processes may race here, and
    # the loser's rename just replaces an identical file.
    with tempfile.TemporaryDirectory(dir=RT_ROOT, prefix=f".build-rt{version}-") as tmp:
        build = Path(tmp)
        database = build / "rtdb"
        env = _write_config(build, version, database, 0, f"build-rt{version}")
        datafile = build / "initialdata"
        datafile.write_text(INITIAL_DATA)
        setup = f"/usr/sbin/rt-setup-database-{version}"
        for args in (
            ["--action", "init"],
            ["--action", "insert", "--datafile", str(datafile)],
        ):
            result = subprocess.run(
                [setup, *args, "--dba", "", "--dba-password", ""],
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
            if result.returncode != 0 or not database.exists():
                raise StackError(
                    f"rt-setup-database-{version} {' '.join(args)} failed:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
        database.rename(target)  # atomic on one file system
    return target


@dataclass
class RtServer:
    """One running RT test server (see the module docstring)."""

    version: int
    port: int
    directory: Path
    rtname: str
    pid: int
    env: dict[str, str] = field(repr=False)
    user: str = ROOT_USER
    password: str = ROOT_PASSWORD
    start_seconds: float = 0.0
    # What devstack.rt_seed.seed made on this server (a Seeded), None until seeded.
    seeded: Any = None

    @property
    def url(self) -> str:
        """RT's web base URL (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    @property
    def rest1(self) -> str:
        """REST 1.0 base URL, as `rt.rest1.Rt(url=...)` wants it."""
        return f"{self.url}/REST/1.0/"

    @property
    def rest2(self) -> str | None:
        """REST 2 base URL (built into RT 5; None on RT 4.4, where it is an extension Debian
        does not package)."""
        return f"{self.url}/REST/2.0/" if self.version >= 5 else None

    @property
    def log_file(self) -> Path:
        """The server's stderr/stdout (RT logs warnings to stderr)."""
        return self.directory / "rt-server.log"

    @property
    def database(self) -> Path:
        """This server's private SQLite database."""
        return self.directory / "rtdb"

    @property
    def sent_dir(self) -> Path:
        """Where the sendmail script puts what RT mails out."""
        return self.directory / "sent"

    @classmethod
    def start(
        cls,
        workdir: Path,
        version: int = 5,
        port: int = 0,
        rtname: str | None = None,
        timeout: float = START_SECONDS,
    ) -> RtServer:
        """Start RT `version` on 127.0.0.1:`port` (0: a free one) with a fresh database in
        `workdir`; returns once its login page answers."""
        if not rt_installed(version):
            raise StackError(
                f"request-tracker{version} is not installed (python -m devstack install)"
            )
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if not port:
            port = free_port()
        rtname = rtname or f"rt{version}test"
        pristine = pristine_database(version)
        database = workdir / "rtdb"
        shutil.copyfile(pristine, database)
        env = _write_config(workdir, version, database, port, rtname)
        started = time.monotonic()
        with open(workdir / "rt-server.log", "ab") as log:
            # Own session, like devstack.procs.spawn: stop_pid signals the whole group.
            proc = subprocess.Popen(
                [
                    str(rt_dir(version) / "libexec" / "rt-server"),
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    # Starlet's default is 10 workers (about 1.2 GB); 3 serve a test and a
                    # mail gateway at once in about a third of that.
                    "--max-workers",
                    str(WORKERS),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        server = cls(
            version=version,
            port=port,
            directory=workdir,
            rtname=rtname,
            pid=proc.pid,
            env=env,
        )
        try:
            wait_ready(
                f"RT {version}",
                proc,
                http_check(f"{server.url}/NoAuth/Login.html"),
                server.log_file,
                timeout=timeout,
            )
        except StackError:
            server.stop()
            raise
        server.start_seconds = time.monotonic() - started
        return server

    def mailgate(self, raw: bytes, queue: str = "General", action: str = "correspond") -> str:
        """Feed one message to RT through `rt-mailgate` as an MTA would; returns its output
        (RT answers e.g. "ok Ticket: 3 Queue: General Owner: Nobody Status: new")."""
        if action not in ("correspond", "comment"):
            raise ValueError(f"mailgate action {action!r}")
        result = subprocess.run(
            [
                f"/usr/bin/rt-mailgate-{self.version}",
                "--queue",
                queue,
                "--action",
                action,
                "--url",
                self.url,
                "--timeout",
                str(int(MAILGATE_SECONDS)),
            ],
            input=raw,
            capture_output=True,
            timeout=MAILGATE_SECONDS + 30,
        )
        if result.returncode != 0:
            raise StackError(
                f"rt-mailgate failed ({result.returncode}): "
                f"{result.stdout.decode(errors='replace')} {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode(errors="replace")

    def create_token(self, user: str = ROOT_USER, description: str = "exobot import") -> str:
        """A new RT auth token (RT::Authen::Token, built into RT 5) for `user`, made with RT's
        own libraries against this server's config and database; the string REST 2 takes in
        "Authorization: token …"."""
        if self.version < 5:
            raise StackError("RT 4.4 has no auth tokens (RT::Authen::Token is an extension)")
        script = (
            "use RT; RT::LoadConfig(); RT::Init();"
            "my $u = RT::User->new(RT->SystemUser); $u->Load($ARGV[0]) or die qq{no user\\n};"
            "my $t = RT::AuthToken->new(RT::CurrentUser->new($u));"
            "my ($id, $msg, $auth) = $t->Create(Owner => $u->id, Description => $ARGV[1]);"
            "die qq{$msg\\n} unless $id; print qq{TOKEN $auth\\n};"
        )
        result = subprocess.run(
            ["perl", f"-I{rt_dir(self.version) / 'lib'}", "-e", script, user, description],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
        )
        for line in result.stdout.splitlines():
            if line.startswith("TOKEN "):
                return line.removeprefix("TOKEN ").strip()
        raise StackError(f"RT token for {user} not created: {result.stdout} {result.stderr}")

    def sent_mail(self) -> list[bytes]:
        """Every message RT has mailed out so far, oldest first (raw bytes)."""
        return [path.read_bytes() for path in sorted(self.sent_dir.glob("*.eml"))]

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        stop_pid(self.pid, "rt-server")


def free_port() -> int:
    """A TCP port on loopback nobody listens on now (the kernel picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
