"""`make demo`: exobot on the local stack (mail servers and Synapse) with SQLite, plus helpers
to play the member.

python -m devstack.demo run                 start the stack, the Matrix accounts and rooms, and
                                            exobot; Ctrl-C stops what it started
python -m devstack.demo send [--from A] [--subject S] [--body B] [--ticket N]
                                            send a member's mail to the support address;
                                            with --ticket, as the member's reply to suport#N
python -m devstack.demo inbox [ADDRESS]     show the mails a member received

`run` registers the bot @exobot:localhost and the volunteer @voluntari:localhost (password
"voluntari-demo"), whose rooms #suport:localhost and #tresoreria:localhost the bot is
invited to. Log in as the volunteer with any Matrix client (e.g. Element) pointed at the
homeserver URL it prints, and to the web address it prints (same user and password, or
`!login` in #suport); everything listens on 127.0.0.1 only. exobot's log goes to
var/demo/exobot.log, so the addresses stay on screen once it is ready.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import yaml

from devstack.exobot_config import exobot_config
from devstack.matrix_setup import MatrixSetup, MatrixSetupError, setup_matrix
from devstack.procs import StackError
from devstack.stack import STACK_FILE, Stack, find_free_base_port, port_is_free

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "var" / "demo"
STACK_DIR = DEMO_DIR / "stack"
CONFIG = DEMO_DIR / "config.yaml"
BOT_PID = DEMO_DIR / "exobot.pid"
BOT_LOG = DEMO_DIR / "exobot.log"
# How long exobot may take to start (its web server answering) before the demo says so.
READY_WAIT = 180.0
SUPPORT = "suport@example.org"
MEMBER = "membre@example.org"
MATRIX_STORE = DEMO_DIR / "matrix"
VOLUNTEER_PASSWORD = "voluntari-demo"  # loopback only
BOT_PASSWORD = "exobot-demo"
WEB_PORT = 8080


# One person plays every member, from one address, and the demo's database outlives a session:
# the guards against a mail loop or a flood from one sender (by default 5 acknowledgements a
# day and 10 new tickets an hour) would leave the member's mails unanswered after a few tries.
SENDER_LIMITS = {"ack_limit_per_day": 100, "new_tickets_per_sender_per_hour": 100}


def demo_config(stack: Stack, matrix: MatrixSetup, web: str) -> dict:
    """exobot's configuration for the demo (as data)."""
    return exobot_config(
        stack,
        address=SUPPORT,
        database_url=f"sqlite:///{DEMO_DIR / 'exobot.db'}",
        matrix=matrix,
        matrix_store=str(MATRIX_STORE),
        web=web,
        display_name="Suport eXO (demo)",
        **SENDER_LIMITS,
    )


def _write_config(stack: Stack, matrix: MatrixSetup, web: str) -> None:
    data = demo_config(stack, matrix, web)
    header = "# Written by `make demo`: exobot on the local stack, SQLite in var/demo/.\n"
    # It holds passwords: readable by its owner only, as exobot asks of any config file.
    CONFIG.touch(mode=0o600)
    CONFIG.chmod(0o600)
    CONFIG.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _free_web_port() -> int:
    """8080, or the next free port after it."""
    return next(p for p in range(WEB_PORT, WEB_PORT + 100) if port_is_free(p))


def _running_stack() -> Stack | None:
    if not (STACK_DIR / STACK_FILE).exists():
        return None
    stack = Stack.load(STACK_DIR)
    return stack if stack.is_running() else None


def cmd_run(_args: argparse.Namespace) -> int:
    """Start the stack (or reuse the demo's running one), the Matrix rooms and exobot;
    Ctrl-C stops what it started."""
    stack = _running_stack()
    started_here = stack is None
    if stack is None:
        if (STACK_DIR / STACK_FILE).exists():
            Stack.load(STACK_DIR).stop()  # leftovers of a demo that did not stop cleanly
        try:
            stack = Stack.start(STACK_DIR, base_port=find_free_base_port(21000), synapse=True)
        except StackError as error:
            print(f"demo: the local stack did not start: {error}", file=sys.stderr)
            return 1
    elif stack.synapse_url is None:
        print(
            f"demo: the running demo stack has no Synapse: stop it first "
            f"({sys.executable} -m devstack stop --dir {STACK_DIR})",
            file=sys.stderr,
        )
        return 1
    try:
        matrix = setup_matrix(stack, password=VOLUNTEER_PASSWORD, bot_password=BOT_PASSWORD)
    except (MatrixSetupError, OSError) as error:
        print(f"demo: setting up the Matrix accounts and rooms failed: {error}", file=sys.stderr)
        if started_here:
            stack.stop()
        return 1
    web = f"127.0.0.1:{_free_web_port()}"
    _write_config(stack, matrix, web)
    me = f"{sys.executable} -m devstack.demo"
    rooms = ", ".join(matrix.aliases.values())
    banner = f"""
exobot demo
  support address  {SUPPORT}  (database {DEMO_DIR / "exobot.db"})
  config           {CONFIG}
  mail server      IMAP 127.0.0.1:{stack.imap_port}, SMTP 127.0.0.1:{stack.smtp_port}
                   any address @example.org is a mailbox, password "{stack.password}"
  Matrix           homeserver {stack.synapse_url}
                   bot {matrix.bot_user_id}
                   rooms {rooms}

  web              http://{web}/

Log in with any Matrix client (e.g. Element, homeserver {stack.synapse_url}):
  user {matrix.volunteer_user_id}   password {matrix.volunteer_password}
Log in to the web at http://{web}/ with the same user and password, or type !login in
#suport and open the link the bot sends you by direct message (accept its invitation).

In another terminal:
  send a member's mail:   {me} send --subject "No em funciona internet"
  see the member's inbox: {me} inbox {MEMBER}
  reply as the member:    {me} send --ticket 1 --body "Encara no funciona"
  quarantine:             .venv/bin/exobot quarantine list -c {CONFIG}
  what was given up:      .venv/bin/exobot outbox list -c {CONFIG}
  exobot's log:           tail -f {BOT_LOG}
Ctrl-C stops exobot{" and the stack" if started_here else ""}.
"""
    _stop_leftover_bot()
    print(f"starting exobot (its log: {BOT_LOG}) …", flush=True)
    # The log goes to a file: start-up lines would push the addresses above off the screen.
    with BOT_LOG.open("ab") as log:
        bot = subprocess.Popen(
            [sys.executable, "-m", "exobot.cli", "run", "-c", str(CONFIG)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    BOT_PID.write_text(str(bot.pid))
    if _wait_ready(bot, web):
        print(banner, flush=True)
    else:
        print(f"demo: exobot did not start; the end of its log ({BOT_LOG}):", file=sys.stderr)
        print(_log_tail(), file=sys.stderr)
    # SIGTERM (a closed terminal, `kill`) stops everything too, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        return bot.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            bot.wait(timeout=30)
        BOT_PID.unlink(missing_ok=True)
        if started_here:
            stack.stop()
            print("demo stack stopped")


def _wait_ready(bot: subprocess.Popen, web: str) -> bool:
    """Wait until exobot's web server answers (start-up done); False when exobot stopped or
    did not get there within READY_WAIT."""
    host, _, port = web.rpartition(":")
    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline:
        if bot.poll() is not None:
            return False
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def _log_tail(lines: int = 20) -> str:
    """The last lines of exobot's log."""
    try:
        return "\n".join(BOT_LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_leftover_bot() -> None:
    """A demo killed hard may have left its exobot running: stop it before starting another."""
    try:
        pid = int(BOT_PID.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"exobot.cli" in cmdline:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


def cmd_send(args: argparse.Namespace) -> int:
    """Send one member mail to the demo's support address."""
    stack = _running_stack()
    if stack is None:
        print("demo: the stack is not running; start it with `make demo`", file=sys.stderr)
        return 1
    subject = args.subject
    if args.ticket is not None:
        # A member's reply: the reference in the subject threads it into the ticket.
        subject = f"Re: [{_prefix()}#{args.ticket}] {subject or ''}".rstrip()
    elif subject is None:
        subject = "No em funciona internet"
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(args.body)
    stack.send_mail(msg.as_bytes(policy=email.policy.SMTP), args.sender, [SUPPORT])
    print(f"sent {msg['Message-ID']} from {args.sender}: {subject!r}")
    return 0


def _prefix() -> str:
    """The demo's ticket prefix (tickets.prefix of its config), `suport` by default."""
    try:
        config = yaml.safe_load(CONFIG.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "suport"
    return str((config.get("tickets") or {}).get("prefix") or "suport")


def cmd_inbox(args: argparse.Namespace) -> int:
    """Print the mails a member has received."""
    stack = _running_stack()
    if stack is None:
        print("demo: the stack is not running; start it with `make demo`", file=sys.stderr)
        return 1
    mails = stack.fetch_all(args.address)
    for uid, raw in mails:
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        part = mail.get_body(("plain",))
        print(f"--- {uid}: {mail['Date']}  {mail['Subject']}")
        print(part.get_content().strip() if part else "(no text)")
    print(f"{len(mails)} mail(s) for {args.address}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the sub-command."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").set_defaults(func=cmd_run)
    send = sub.add_parser("send")
    send.add_argument("--from", dest="sender", default=MEMBER)
    send.add_argument("--subject", default=None, help="default: No em funciona internet")
    send.add_argument(
        "--body", default="Hola,\n\ndes d'ahir a la tarda no tinc connexió.\n\nGràcies"
    )
    send.add_argument(
        "--ticket",
        type=int,
        metavar="N",
        help="send it as the member's reply to ticket N (its reference in the subject)",
    )
    send.set_defaults(func=cmd_send)
    inbox = sub.add_parser("inbox")
    inbox.add_argument("address", nargs="?", default=MEMBER)
    inbox.set_defaults(func=cmd_inbox)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
