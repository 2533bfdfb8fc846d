"""TLS to the real Dovecot and SMTP relay: the default `ssl` / `starttls` code paths.

The stack's certificate (localhost, 127.0.0.1) is signed by its own CA, `stack.ca_file`.
exobot has no CA setting: it uses OpenSSL's default verify paths, so trusting the CA means
SSL_CERT_FILE, which every `ssl.create_default_context()` reads when it is called (aioimaplib
makes one per IMAP4_SSL client, ImapIntake._starttls and aiosmtplib one per connection).
"""

from __future__ import annotations

import logging
import re

import pytest
from harness import member_mail, unique, wait_until

from devstack.stack import PORT_OFFSETS
from exobot.app import App

pytestmark = pytest.mark.integration



@pytest.fixture
def tls_stack(stack):
    """The session stack, when it has TLS listeners (a reused older stack may not)."""
    if not (stack.imaps_port and stack.smtps_port and stack.ca_file):
        pytest.skip("the stack has no TLS listeners (started by an older devstack?)")
    return stack


@pytest.fixture
def trust_stack_ca(tls_stack, monkeypatch):
    """Make the stack's CA the one OpenSSL trusts (for contexts created from now on)."""
    monkeypatch.setenv("SSL_CERT_FILE", tls_stack.ca_file)


def _log(stack, name: str) -> str:
    return (stack.dir / "logs" / f"{name}.log").read_text(errors="replace")


async def _ticket_and_ack(inst) -> str:
    """A member's mail becomes ticket 1 and the acknowledgement reaches the member."""
    await inst.start()
    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject="Connexió xifrada"))
    await inst.wait_tickets(1)
    [ack] = await inst.wait_mailbox(member, 1)
    assert ack["Subject"].startswith("[suport#1] ")
    assert ack["From"].addresses[0].addr_spec == inst.address
    return member


def _assert_tls_used(stack, inst, member: str) -> None:
    # Dovecot marks a login over TLS (implicit or STARTTLS) with "TLS" (plain local
    # connections say "secured"); the relay logs the TLS version of each DATA.
    logins = [
        line
        for line in _log(stack, "dovecot").splitlines()
        if "imap-login: Info: Login:" in line and f"user=<{inst.address}>" in line
    ]
    assert logins and all(", TLS," in line for line in logins), logins
    deliveries = [
        line
        for line in _log(stack, "smtp").splitlines()
        if "DATA from" in line and f"'{member}'" in line
    ]
    assert deliveries and all(re.search(r"bytes, TLSv1\.[23]\)", line) for line in deliveries), (
        deliveries
    )


async def test_implicit_tls_for_imap_and_smtp(tls_stack, trust_stack_ca, make_instance):
    inst = make_instance(
        imap={"port": tls_stack.imaps_port, "security": "ssl"},
        smtp={"port": tls_stack.smtps_port, "security": "ssl"},
    )
    member = await _ticket_and_ack(inst)
    _assert_tls_used(tls_stack, inst, member)


async def test_starttls_for_imap_and_smtp(tls_stack, trust_stack_ca, make_instance):
    inst = make_instance(
        imap={"port": tls_stack.imap_port, "security": "starttls"},
        smtp={"port": tls_stack.smtp_port, "security": "starttls"},
    )
    member = await _ticket_and_ack(inst)
    _assert_tls_used(tls_stack, inst, member)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
async def test_untrusted_certificate_is_logged_and_retried(
    tls_stack, make_instance, monkeypatch, caplog, security
):
    # Whatever the runner's environment says, OpenSSL's own default CA file does not hold
    # the stack's CA.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    caplog.set_level(logging.WARNING, logger="exobot.mail.intake")
    port = tls_stack.imaps_port if security == "ssl" else tls_stack.imap_port
    inst = make_instance(imap={"port": port, "security": security})
    inst.app = App(inst.config)  # not inst.start(): it waits for a connection
    await inst.app.start()

    def intake_warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "exobot.mail.intake"]

    async def retried() -> bool:
        return len(intake_warnings()) >= 2  # it keeps retrying (backoff 1 s, 2 s, …)

    await wait_until(retried, what="a second refused connection attempt")
    assert not inst.app.intake.connected.is_set()
    assert not any(task.done() for task in inst.app.tasks)  # nothing crashed
    warnings = intake_warnings()
    assert all("CERTIFICATE_VERIFY_FAILED" in w and "certificate" in w for w in warnings), warnings
    assert all("reconnecting in" in w for w in warnings), warnings


def test_port_offsets_end_in_different_digits():
    # What lets stacks whose base ports are a multiple of 10 apart never collide.
    assert len({offset % 10 for offset in PORT_OFFSETS.values()}) == len(PORT_OFFSETS)
