"""The mail trust keys: mail.new_tickets_per_sender_per_hour and mail.trusted_authserv_id."""

from __future__ import annotations

import pytest
from test_config import minimal, problems_of, with_value

from exobot.config import parse_config


def test_defaults() -> None:
    cfg = parse_config(minimal(), env={})
    assert cfg.mail.new_tickets_per_sender_per_hour == 10
    assert cfg.mail.trusted_authserv_id is None


def test_set_values_and_environment() -> None:
    cfg = parse_config(
        with_value(minimal(), "mail.trusted_authserv_id", "mx.example.org"),
        env={"EXOBOT__MAIL__NEW_TICKETS_PER_SENDER_PER_HOUR": "3"},
    )
    assert cfg.mail.trusted_authserv_id == "mx.example.org"
    assert cfg.mail.new_tickets_per_sender_per_hour == 3


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mail.new_tickets_per_sender_per_hour", 0),
        ("mail.new_tickets_per_sender_per_hour", "many"),
        ("mail.trusted_authserv_id", "mx.example.org; dmarc=pass"),
        ("mail.trusted_authserv_id", ""),
    ],
)
def test_bad_values_name_the_key(key: str, value: object) -> None:
    [problem] = problems_of(with_value(minimal(), key, value))
    assert problem.startswith(key)
