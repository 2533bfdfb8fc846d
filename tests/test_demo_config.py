"""The demo's configuration: valid for exobot, and fit for one person playing every member."""

from pathlib import Path

from devstack.demo import demo_config
from devstack.matrix_setup import MatrixSetup
from devstack.stack import Stack
from exobot.config import parse_config


def test_the_demo_config_is_valid_and_keeps_answering_one_member(tmp_path: Path) -> None:
    stack = Stack(dir=tmp_path, imap_port=20143, lmtp_port=20024, smtp_port=20025)
    matrix = MatrixSetup(
        bot_user_id="@exobot:localhost",
        bot_password="bot-password",
        volunteer_user_id="@voluntari:localhost",
        volunteer_password="voluntari-demo",
        homeserver="http://127.0.0.1:20008",
        aliases={"suport": "#suport:localhost", "tresoreria": "#tresoreria:localhost"},
    )

    config = parse_config(demo_config(stack, matrix, "127.0.0.1:8080"))

    # A visitor sends a dozen mails from the one member address in an afternoon: each is
    # acknowledged and none is held as a flood, as it would be for many members.
    assert config.mail.ack_limit_per_day >= 50
    assert config.mail.new_tickets_per_sender_per_hour >= 50
    assert config.matrix is not None and config.web.enabled
