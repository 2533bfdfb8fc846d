"""`make demo`: exobot on the local stack (mail servers and Synapse) with SQLite, plus helpers
to play the member.

python -m devstack.demo run                 start the stack, the Matrix accounts and rooms, and
                                            exobot; Ctrl-C stops what it started
python -m devstack.demo send [--from A] [--subject S] [--body B]
                                            send a member's mail to the support address
python -m devstack.demo inbox [ADDRESS]     show the mails a member received

`run` registers the bot @exobot:localhost and the volunteer @voluntari:localhost (password
"voluntari-demo"), whose rooms #suport:localhost and #tresoreria:localhost the bot is
invited to. Log in as the volunteer with any Matrix client (e.g. Element) pointed at the
homeserver URL it prints, and to the web address it prints (same user and password, or
`!login` in #suport); everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import signal
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
SUPPORT = "suport@example.org"
MEMBER = "membre@example.org"
MATRIX_STORE = DEMO_DIR / "matrix"
VOLUNTEER_PASSWORD = "voluntari-demo"  # loopback only
BOT_PASSWORD = "exobot-demo"
WEB_PORT = 8080


def _write_config(stack: Stack, matrix: MatrixSetup, web: str) -> None:
    data = exobot_config(
        stack,
        address=SUPPORT,
        database_url=f"sqlite:///{DEMO_DIR / 'exobot.db'}",
        matrix=matrix,
        matrix_store=str(MATRIX_STORE),
        web=web,
        display_name="Suport eXO (demo)",
    )
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
    print(
        f"""
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
  quarantine:             .venv/bin/exobot quarantine list -c {CONFIG}
Ctrl-C stops exobot{" and the stack" if started_here else ""}.
""",
        flush=True,
    )
    _stop_leftover_bot()
    bot = subprocess.Popen([sys.executable, "-m", "exobot.cli", "run", "-c", str(CONFIG)], cwd=ROOT)
    BOT_PID.write_text(str(bot.pid))
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
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = SUPPORT
    msg["Subject"] = args.subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(args.body)
    stack.send_mail(msg.as_bytes(policy=email.policy.SMTP), args.sender, [SUPPORT])
    print(f"sent {msg['Message-ID']} from {args.sender}: {args.subject!r}")
    return 0


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
    send.add_argument("--subject", default="No em funciona internet")
    send.add_argument(
        "--body", default="Hola,\n\ndes d'ahir a la tarda no tinc connexió.\n\nGràcies"
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
