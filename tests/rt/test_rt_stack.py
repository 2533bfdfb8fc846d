"""The test Request Tracker servers answer their APIs and hold what the seed recorded
(tests/rt/conftest.py, devstack/rt.py, devstack/rt_seed.py)."""

from __future__ import annotations

import email
import email.policy
import urllib.error
import urllib.request

import pytest
import requests.auth
import rt.rest1
import rt.rest2

VERSIONS = ["rt5", "rt4"]


@pytest.fixture(params=VERSIONS)
def server(request):
    """Each seeded session server in turn."""
    return request.getfixturevalue(request.param)


def _rest1(server) -> rt.rest1.Rt:
    client = rt.rest1.Rt(server.rest1, server.user, server.password)
    assert client.login()
    return client


def test_rest1_answers(server):
    client = _rest1(server)
    ticket = client.get_ticket(1)
    assert ticket["id"] == "ticket/1"
    assert ticket["Subject"] == server.seeded.ticket(1).subject


def test_rest2_answers_on_rt5(rt5):
    client = rt.rest2.Rt(rt5.rest2, http_auth=requests.auth.HTTPBasicAuth(rt5.user, rt5.password))
    ticket = client.get_ticket(7)
    assert ticket["Subject"] == rt5.seeded.ticket(7).subject
    # A merged number shows the survivor (see devstack/rt.py's notes).
    assert str(client.get_ticket(6)["id"]) == "7"


def test_rt4_has_no_rest2(rt4):
    assert rt4.rest2 is None
    request = urllib.request.Request(f"{rt4.url}/REST/2.0/ticket/1")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    assert not body.lstrip().startswith(b"{")


def test_seed_as_recorded(server):
    client = _rest1(server)
    seeded = server.seeded
    assert sorted(seeded.tickets) == list(range(1, 10))
    assert seeded.merged == {6: 7, 8: 7}
    assert seeded.deleted == [5]
    for number, expected in seeded.tickets.items():
        shown = client.get_ticket(number)
        survivor = expected.merged_into or number
        assert shown["id"] == f"ticket/{survivor}", number
        if expected.merged_into:
            continue
        assert shown["Queue"] == expected.queue, number
        assert shown["Subject"] == expected.subject, number
        assert shown["Status"] == expected.status, number
        assert shown["Owner"] == expected.owner, number
        assert sorted(shown["Requestors"]) == sorted(expected.requestors), number
        assert sorted(c for c in shown["Cc"] if c) == sorted(expected.cc), number


def test_seed_attachments_and_message_ids(server):
    client = _rest1(server)
    seeded = server.seeded
    for number in (1, 2, 7):
        expected = seeded.ticket(number)
        names, message_ids = set(), set()
        for attachment_id in client.get_attachments_ids(number):
            attachment = client.get_attachment(number, attachment_id)
            if attachment["Filename"]:
                names.add(attachment["Filename"])
            if attachment["MessageId"]:
                message_ids.add(attachment["MessageId"])
        assert set(expected.attachments) <= names, number
        fed_in = {m for m, n in seeded.message_ids.items() if n == number}
        assert fed_in, number
        assert fed_in <= message_ids, number
    assert "factura-març.pdf" in seeded.ticket(1).attachments


def test_sent_mail_is_recorded_as_email_record(server):
    client = _rest1(server)
    recorded = set()
    for number, ticket in server.seeded.tickets.items():
        if ticket.merged_into:
            continue
        for item in client.get_history(number):
            if item["Type"] == "EmailRecord":
                recorded.add(item["Data"].strip().strip("<>"))
    sent = [
        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"].strip("<>")
        for raw in server.sent_mail()
    ]
    # Auto-replies to the mailed-in tickets at least, each recorded in RT's history.
    assert len(sent) >= 8
    assert set(sent) <= recorded
