"""The test stack itself: the servers later issues rely on answer as expected."""

from __future__ import annotations

import json
import smtplib
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def test_synapse_registers_and_logs_in_users(stack):
    if stack.synapse_url is None:
        pytest.skip("stack started without Synapse (EXOBOT_STACK_SYNAPSE=0)")
    user = stack.register_matrix_user("volunteer-stack-test", "pw-test", exist_ok=True)
    assert user["user_id"] == "@volunteer-stack-test:localhost"
    login = stack.login_matrix_user("volunteer-stack-test", "pw-test")
    request = urllib.request.Request(
        f"{stack.synapse_url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {login['access_token']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["user_id"] == user["user_id"]


def test_smtp_refuses_unknown_users_like_a_real_server(stack):
    raw = b"From: a@example.org\r\nTo: b@nowhere.invalid\r\nSubject: x\r\n\r\nx\r\n"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        stack.send_mail(raw, "a@example.org", ["b@nowhere.invalid"])
    assert refused.value.recipients["b@nowhere.invalid"][0] == 550
