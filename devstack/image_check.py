"""Build exobot's container image from a clean clone and run it against the test stack.

`python -m devstack.image_check` (root; `make image-check`, run by `.ci/run` after the tests).
No container registry is needed: when the image the Dockerfile's FROM names is missing, it is
made here with `debootstrap --variant=minbase bookworm` from the Debian mirror apt already uses
(the same thing as Debian's bookworm-slim). podman runs with runc and rlimits within the
current hard limits, and build steps borrow the host's CA bundle (an intercepting proxy may sit
between this machine and the package index). What it checks, each step timed:

1. the image: Debian's python3, a non-root user, fping and pg_dump, the compiled catalogs
   of exobot and every bundled plugin, a HEALTHCHECK;
2. `--help`; `check-config` says OK on a filled config and exits 2 on the unedited
   config.yaml.example; `migrate` on SQLite (and on the stack's PostgreSQL);
3. `run` on the host network against the devstack (Dovecot, SMTP relay; no Synapse): a mail
   to the support address becomes a ticket and its acknowledgement reaches the member; the
   connectivity plugin's TCP probe (and fping, with NET_RAW) answers in a process running as
   the image's user; /healthz answers 200 and `podman healthcheck run` passes; `exobot backup`
   works while it runs (and with the image's pg_dump on PostgreSQL); SIGTERM stops it cleanly;
4. compose.yaml: parsed by podman-compose (a dev extra: Debian's 1.0 has no `config`).

Exit 0 when everything passed, 1 with one line `image check FAILED: STEP: why` otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import yaml

from devstack.exobot_config import exobot_config
from devstack.install import install_container_tools
from devstack.procs import port_is_free
from devstack.stack import Stack, find_free_base_port

ROOT = Path(__file__).resolve().parent.parent
BASE = "docker.io/library/debian:bookworm-slim"
IMAGE = "localhost/exobot:check"
WORKDIR = Path(tempfile.gettempdir()) / "exobot-image-check"
UID = 10001  # the image's user (Dockerfile)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILD_CA = "/run/host-ca-certificates.crt"  # where RUN steps see the host's bundle
# As Debian's official slim images: no manuals, docs or translations of other programs.
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
SLIM_APT = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""
CATALOG_PACKAGES = ("exobot", "exobot_connectivity", "exobot_procedures", "exobot_saved_replies")
LANGUAGES = ("ca", "es", "en")
# Generous: the first run of a fresh image also compiles nothing, but a loaded CI machine is slow.
MAIL_DEADLINE = 180.0
PROBE_DEADLINE = 180.0
HEALTH_DEADLINE = 120.0


class CheckFailed(Exception):
    """A step failed; the message says why in one line (details were printed before)."""


class Check:
    """The steps, their timings and the podman command line shared by all of them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.workdir
        self.timings: list[tuple[str, float]] = []
        self.step_name = "start"
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = hard if hard != resource.RLIM_INFINITY else 1048576
        # crun refuses this kind of VM's hybrid cgroup mounts; the VM cannot raise rlimits.
        self.podman = ["podman", "--runtime", "runc"]
        self.ulimits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step and name it in a failure."""
        self.step_name = name
        started = time.monotonic()
        print(f"-- {name}", flush=True)
        yield
        elapsed = time.monotonic() - started
        self.timings.append((name, elapsed))
        print(f"   ok ({elapsed:.1f}s)", flush=True)

    def sh(
        self, cmd: list[str], *, log: str | None = None, check: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess:
        """Run a command; with `log`, its output goes to WORK/log and its tail is shown on
        failure. Raises CheckFailed when `check` and the command fails."""
        if log:
            path = self.work / log
            with path.open("wb") as out:
                result = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
                )
            result.stdout = path.read_bytes()
        else:
            result = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            output = (result.stdout or b"") + (result.stderr or b"")
            tail = output.decode(errors="replace").strip().splitlines()[-25:]
            print("\n".join("   | " + line for line in tail), file=sys.stderr)
            raise CheckFailed(f"`{' '.join(cmd[:6])} …` exited {result.returncode}")
        return result

    def run_image(
        self, *args: str, options: list[str] = (), check: bool = True
    ) -> subprocess.CompletedProcess:
        """`podman run --rm` of the image with `options` before it and `args` after it."""
        # No HEALTHCHECK timers for one-off commands (podman would ask systemd for them).
        cmd = [*self.podman, "run", "--rm", "--no-healthcheck", *self.ulimits, *options]
        cmd = [*cmd, self.args.image, *args]
        return self.sh(cmd, check=check, timeout=600)

    # ------------------------------------------------------------------- steps

    def tools(self) -> None:
        """podman, runc and debootstrap from Debian, when missing (as `make stack` does)."""
        try:
            install_container_tools()
        except SystemExit as failed:  # the installer's clear line, as this check's failure
            raise CheckFailed(str(failed)) from None

    def base(self) -> None:
        """The image FROM names: kept when present, else made with debootstrap."""
        exists = subprocess.run([*self.podman, "image", "exists", self.args.base], check=False)
        if exists.returncode == 0:
            print(f"   {self.args.base} is there")
            return
        rootfs = self.work / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        self.sh(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()],
            log="debootstrap.log",
        )
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG)
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(SLIM_APT)
        for path in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / path).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = [
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["bash"]',
        ]
        imported = subprocess.run(
            [*self.podman, "import", *changes, "-", self.args.base],
            stdin=tar.stdout,
            capture_output=True,
            check=False,
        )
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
        if imported.returncode != 0 or tar.returncode != 0:
            print(imported.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
            raise CheckFailed(f"could not import the debootstrap tree as {self.args.base}")

    def clone(self) -> Path:
        """A clean clone of the committed tree (what a deployment builds)."""
        src = self.work / "src"
        shutil.rmtree(src, ignore_errors=True)
        self.sh(["git", "clone", "-q", str(self.args.src), str(src)])
        return src

    def build(self, src: Path) -> None:
        """`podman build` without any registry; the old image of this tag, and the build
        stage's image the build leaves untagged (652 MB at each run), are removed after."""
        old = image_id(self.args.image)
        untagged_before = untagged_images()
        pip_conf = self.work / "pip.conf"
        volumes = []
        if Path(CA_BUNDLE).exists():
            # Beside, not over, the image's own bundle: installing ca-certificates replaces it.
            pip_conf.write_text(f"[global]\ncert = {BUILD_CA}\n")
            volumes = ["-v", f"{CA_BUNDLE}:{BUILD_CA}:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]
        self.sh(
            [
                *self.podman,
                "build",
                "--pull=never",
                "--format",
                "docker",  # OCI images drop HEALTHCHECK
                "--build-arg",
                f"BASE={self.args.base}",
                *self.ulimits,
                *volumes,
                "-t",
                self.args.image,
                str(src),
            ],
            log="build.log",
            timeout=3600,
        )
        new = image_id(self.args.image)
        if old and old != new:
            subprocess.run([*self.podman, "rmi", old], capture_output=True, check=False)
        # Only what this build left: another project's untagged images are not ours to drop.
        for leftover in untagged_images() - untagged_before:
            subprocess.run([*self.podman, "rmi", leftover], capture_output=True, check=False)
        size = self.sh([*self.podman, "image", "inspect", "--format", "{{.Size}}", new])
        print(f"   image {self.args.image}: {int(size.stdout) / 1e6:.0f} MB")

    def contents(self) -> None:
        """Debian's python3, the user, fping, pg_dump, catalogs and the HEALTHCHECK."""
        inspect = json.loads(self.sh([*self.podman, "image", "inspect", self.args.image]).stdout)
        config = inspect[0]["Config"]
        if config.get("User") != "exobot":
            raise CheckFailed(f"the image runs as {config.get('User')!r}, not exobot")
        health = (inspect[0].get("Healthcheck") or config.get("Healthcheck") or {}).get("Test")
        if not health:
            raise CheckFailed("the image has no HEALTHCHECK")
        probe = (
            "import glob, json, os, sys, sysconfig;"
            "site = sysconfig.get_paths()['purelib'];"
            "print(json.dumps({'uid': os.getuid(), 'base': sys._base_executable,"
            " 'version': sys.version_info[:2],"
            " 'mo': sorted(p[len(site) + 1:] for p in glob.glob(site + '/*/locale/*/LC_MESSAGES/*.mo'))}))"
        )
        facts = json.loads(self.run_image("-c", probe, options=["--entrypoint", "python3"]).stdout)
        print(f"   python {facts['base']} {facts['version']}, uid {facts['uid']}")
        if facts["uid"] != UID or not facts["base"].startswith("/usr/bin/python3"):
            raise CheckFailed(f"expected Debian's /usr/bin/python3 as uid {UID}: {facts}")
        missing = [
            f"{package}/locale/{lang}"
            for package in CATALOG_PACKAGES
            for lang in LANGUAGES
            if not any(m.startswith(f"{package}/locale/{lang}/") for m in facts["mo"])
        ]
        if missing:
            raise CheckFailed(f"compiled catalogs missing in the image: {', '.join(missing)}")
        for tool in (["fping", "--version"], ["pg_dump", "--version"]):
            # Debian's fping carries cap_net_raw: it cannot even start without NET_RAW.
            options = ["--entrypoint", tool[0], "--cap-add", "NET_RAW"]
            out = self.run_image(*tool[1:], options=options).stdout
            print(f"   {out.decode(errors='replace').strip().splitlines()[0]}")

    def commands(self, example: Path, config: Path, pg_config: Path | None) -> None:
        """--help, check-config (filled: OK; example: exit 2), migrate (SQLite, PostgreSQL)."""
        out = self.run_image("--help").stdout.decode(errors="replace")
        if "check-config" not in out:
            raise CheckFailed("`exobot --help` does not list check-config")
        mount = ["-v", f"{example}:/etc/exobot/config.yaml:ro"]
        result = self.run_image(
            "check-config", "-c", "/etc/exobot/config.yaml", options=mount, check=False
        )
        if result.returncode != 2:
            raise CheckFailed(
                f"check-config on the unedited example exited {result.returncode}, not 2"
            )
        mount = ["-v", f"{config}:/etc/exobot/config.yaml:ro"]
        data = ["-v", f"{self.work / 'data'}:/var/lib/exobot"]
        result = self.run_image("check-config", "-c", "/etc/exobot/config.yaml", options=mount)
        if result.stdout.decode().strip() != "OK":
            raise CheckFailed(f"check-config on a filled config said {result.stdout!r}")
        self.run_image("migrate", "-c", "/etc/exobot/config.yaml", options=[*mount, *data])
        if pg_config is not None:
            mount = ["-v", f"{pg_config}:/etc/exobot/config.yaml:ro", "--network", "host"]
            self.run_image("migrate", "-c", "/etc/exobot/config.yaml", options=mount)
            # The image's pg_dump against the stack's server (a backup needs it).
            target = "/var/lib/exobot/backups/postgresql"
            self.run_image(
                "backup", target, "-c", "/etc/exobot/config.yaml", options=[*mount, *data]
            )
            written = sorted(p.name for p in (self.work / "data/backups/postgresql").iterdir())
            print(f"   PostgreSQL backup by the image's pg_dump: {', '.join(written)}")

    def run(self, stack: Stack, config: Path, web: str) -> None:
        """`exobot run` in the image against the stack: mail → ticket → ack; probes; health."""
        name = f"exobot-image-check-{os.getpid()}"
        options = [
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "-v",
            f"{config}:/etc/exobot/config.yaml:ro",
            "-v",
            f"{self.work / 'data'}:/var/lib/exobot",
        ]
        if self.args.net_raw:
            options += ["--cap-add", "NET_RAW"]
        cmd = [*self.podman, "run", *self.ulimits, *options, self.args.image]
        self.sh([*cmd, "run", "-c", "/etc/exobot/config.yaml"])
        try:
            self._exercise(stack, name, web)
            self.sh([*self.podman, "stop", "-t", "60", name])
            code = self.sh([*self.podman, "inspect", "--format", "{{.State.ExitCode}}", name])
            if code.stdout.strip() != b"0":
                raise CheckFailed(f"exobot exited {code.stdout.strip().decode()} on SIGTERM")
        except BaseException:
            logs = subprocess.run(
                [*self.podman, "logs", "--tail", "40", name], capture_output=True, check=False
            )
            text = (logs.stdout + logs.stderr).decode(errors="replace")
            print("\n".join("   | " + line for line in text.splitlines()), file=sys.stderr)
            raise
        finally:
            subprocess.run(
                [*self.podman, "rm", "-f", "-t", "5", name], capture_output=True, check=False
            )

    def _exercise(self, stack: Stack, name: str, web: str) -> None:
        member, support = stack.address("anna"), stack.address("suport")
        mail = EmailMessage()
        mail["From"], mail["To"] = f"Anna <{member}>", support
        mail["Subject"] = "No em funciona internet"
        mail["Message-ID"] = f"<image-check-{os.getpid()}@example.org>"
        mail.set_content("Bon dia, des d'ahir no tinc connexió. Gràcies!\n")
        stack.send_mail(mail.as_bytes(), member, [support])
        db = self.work / "data" / "var" / "exobot.db"

        def ack() -> str | None:
            for _uid, raw in stack.fetch_all(member):
                subject = BytesParser(policy=default_policy).parsebytes(raw)["Subject"] or ""
                if "suport#" in subject:
                    return subject
            return None

        subject = self.wait(name, "the acknowledgement in the member's mailbox", ack, MAIL_DEADLINE)
        tickets = query(db, "SELECT count(*) FROM tickets")[0][0]
        if tickets != 1:
            raise CheckFailed(f"{tickets} tickets in the database after one mail")
        print(f"   ticket made; the member got {subject!r}")

        uid = process_uid(name)
        if uid != UID:
            raise CheckFailed(f"exobot runs as uid {uid} in the container, not {UID}")
        kinds = ["tcp", "icmp"] if self.args.net_raw else ["tcp"]

        def probed() -> dict | None:
            rows = query(
                db,
                "SELECT m.kind, max(r.received), max(r.error) FROM connectivity_rounds r "
                "JOIN connectivity_monitors m ON m.id = r.monitor_id GROUP BY m.kind",
            )
            found = {kind: (received, error) for kind, received, error in rows}
            if all(kind in found for kind in kinds):
                return found
            return None

        found = self.wait(name, f"connectivity rounds ({', '.join(kinds)})", probed, PROBE_DEADLINE)
        for kind in kinds:
            received, error = found[kind]
            if not received:
                raise CheckFailed(f"the {kind} probe got no answer as uid {UID}: {error}")
        print(f"   probes answered as uid {uid}: {', '.join(kinds)}")

        def healthy() -> int | None:
            try:
                with urllib.request.urlopen(f"http://{web}/healthz", timeout=10) as response:
                    json.loads(response.read())
                    return response.status
            except urllib.error.HTTPError as error:
                return None if error.code == 503 else error.code
            except (OSError, ValueError):
                return None

        status = self.wait(name, "/healthz", healthy, HEALTH_DEADLINE)
        if status != 200:
            raise CheckFailed(f"/healthz answered {status}")
        self.sh([*self.podman, "healthcheck", "run", name])
        print("   /healthz 200; the image's HEALTHCHECK passes")
        backup = [
            "exobot",
            "backup",
            "/var/lib/exobot/backups/live",
            "-c",
            "/etc/exobot/config.yaml",
        ]
        self.sh([*self.podman, "exec", name, *backup])
        written = sorted(p.name for p in (self.work / "data/backups/live").iterdir())
        print(f"   backup while it runs: {', '.join(written)}")

    def wait(self, name: str, what: str, condition, deadline: float):
        """Poll `condition` until it returns something; fail if the container stops first."""
        end = time.monotonic() + deadline
        while True:
            value = condition()
            if value is not None:
                return value
            state = self.sh([*self.podman, "inspect", "--format", "{{.State.Status}}", name])
            if state.stdout.strip() != b"running":
                raise CheckFailed(
                    f"exobot stopped ({state.stdout.strip().decode()}) while waiting for {what}"
                )
            if time.monotonic() > end:
                raise CheckFailed(f"no {what} within {deadline:.0f}s")
            time.sleep(0.5)

    def compose(self, src: Path) -> None:
        """compose.yaml parses for podman-compose (the dev extra's, which has `config`), with
        the services the README names."""
        spec = yaml.safe_load((src / "compose.yaml").read_text())
        if set(spec.get("services", {})) != {"exobot", "postgres"}:
            raise CheckFailed(f"compose.yaml services: {sorted(spec.get('services', {}))}")
        if self.args.no_compose:
            return
        env = {
            **os.environ,
            "EXOBOT_CONFIG": str(src / "config.yaml.example"),
            "POSTGRES_PASSWORD": "check",
        }
        out = subprocess.run(
            [str(Path(sys.executable).parent / "podman-compose"), "-f", "compose.yaml", "config"],
            capture_output=True,
            env=env,
            cwd=src,
            check=False,
        )
        if out.returncode != 0:
            print(out.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
            raise CheckFailed("podman-compose config refused compose.yaml")


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 sources or sources.list)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            if line.startswith("deb "):
                return next(w for w in line.split()[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def image_id(image: str) -> str | None:
    """The id of a local image, or None."""
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        check=False,
    )
    return result.stdout.decode().strip() or None if result.returncode == 0 else None


def untagged_images() -> set[str]:
    """The ids of the local images without a name (dangling: a build stage's result)."""
    result = subprocess.run(
        ["podman", "images", "--quiet", "--no-trunc", "--filter", "dangling=true"],
        capture_output=True,
        check=False,
    )
    return set(result.stdout.decode().split()) if result.returncode == 0 else set()


def process_uid(container: str) -> int:
    """The real uid of a container's main process, read from the host's /proc."""
    pid = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Pid}}", container],
        capture_output=True,
        check=True,
    ).stdout.strip()
    for line in Path(f"/proc/{int(pid)}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise CheckFailed(f"no Uid line for pid {pid}")


def query(db: Path, sql: str) -> list[tuple]:
    """Rows of a read-only query on the container's SQLite database (empty while missing)."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
            return c.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # a table the migrations have not made yet


def free_port() -> int:
    """A free loopback port for exobot's web server."""
    for port in range(28080, 29080):
        if port_is_free(port):
            return port
    raise CheckFailed("no free port for the web server")


def write_config(path: Path, data: dict) -> Path:
    """A config file only the image's user can read (exobot warns about any other mode)."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chown(path, UID, UID)
    path.chmod(0o600)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run every step; print the timings; exit 0, or 1 with one FAILED line."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.image_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--src", default=str(ROOT), help="repository to clone (default: this one)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--base", default=BASE, help="the image FROM uses (default %(default)s)")
    parser.add_argument(
        "--net-raw",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give the container NET_RAW and check fping too (default: on)",
    )
    parser.add_argument("--no-compose", action="store_true", help="skip podman-compose")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image check FAILED: needs root (rootful podman, debootstrap)", file=sys.stderr)
        return 1
    check = Check(args)
    started = time.monotonic()
    stack = None
    try:
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        with check.step("tools (podman, runc, debootstrap)"):
            check.tools()
        with check.step(f"base image {args.base}"):
            check.base()
        with check.step("clean clone"):
            src = check.clone()
        with check.step("build"):
            check.build(src)
        with check.step("image contents"):
            check.contents()
        with check.step("test stack (Dovecot, SMTP relay, PostgreSQL)"):
            stack = Stack.start(
                args.workdir / "stack",
                base_port=find_free_base_port(26000),
                synapse=False,
                postgres=True,
            )
            data = args.workdir / "data"
            data.mkdir()
            os.chown(data, UID, UID)
            web = f"127.0.0.1:{free_port()}"
            settings = exobot_config(
                stack,
                address=stack.address("suport"),
                database_url="sqlite:///var/exobot.db",
                web=web,
            )
            targets = [f"127.0.0.1 tcp:{stack.imap_port}"] + (["127.0.0.1"] if args.net_raw else [])
            settings["plugins"] = {
                "connectivity": {"reference_targets": targets, "pings": 3, "step": "1m"},
                "saved-replies": {},
                "procedures": {"queue": "tresoreria"},
            }
            config = write_config(args.workdir / "config.yaml", settings)
            pg = {**settings, "database": {"url": stack.postgres_url()}}
            pg_config = write_config(args.workdir / "config-pg.yaml", pg)
        with check.step("--help, check-config, migrate, backup"):
            check.commands(src / "config.yaml.example", config, pg_config)
        with check.step("run: mail → ticket → acknowledgement, probes, /healthz"):
            check.run(stack, config, web)
        with check.step("compose.yaml"):
            check.compose(src)
    except CheckFailed as error:
        print(f"image check FAILED: {check.step_name}: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a StackError, a timeout: still one clear line
        print(
            f"image check FAILED: {check.step_name}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    finally:
        if stack is not None:
            stack.stop()
    total = time.monotonic() - started
    steps = "; ".join(f"{name} {secs:.0f}s" for name, secs in check.timings)
    print(f"image check passed in {total:.0f}s ({steps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
