"""The privacy section: masking switch, advice texts and the retention durations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_config import minimal, problems_of, with_value

from exobot.config import parse_config


def test_defaults() -> None:
    privacy = parse_config(minimal(), env={}).privacy
    assert privacy.mask is True
    assert privacy.advice == {}
    assert privacy.retention == timedelta(days=730)
    assert privacy.raw_mail_retention == timedelta(days=30)
    assert privacy.mailbox_retention is None


def test_set_values_and_environment() -> None:
    data = with_value(minimal(), "privacy.advice", {"es": "No envíe datos bancarios."})
    cfg = parse_config(
        data,
        env={
            "EXOBOT__PRIVACY__RETENTION": "365d",
            "EXOBOT__PRIVACY__MAILBOX_RETENTION": "90d",
            "EXOBOT__PRIVACY__MASK": "false",
        },
    )
    assert cfg.privacy.advice == {"es": "No envíe datos bancarios."}
    assert cfg.privacy.retention == timedelta(days=365)
    assert cfg.privacy.mailbox_retention == timedelta(days=90)
    assert cfg.privacy.mask is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("privacy.retention", "0d"),
        ("privacy.retention", "two years"),
        ("privacy.raw_mail_retention", "0s"),
        ("privacy.mailbox_retention", "soon"),
        ("privacy.advice", {"fr": "Pas de données"}),
        ("privacy.keep", True),
    ],
)
def test_bad_values_name_the_key(key: str, value: object) -> None:
    [problem] = problems_of(with_value(minimal(), key, value))
    assert problem.startswith(key)
