"""`exobot privacy export --output FILE` never writes over an existing file (a mistyped path
replaced whatever it named, and an existing file kept its permissions: a person's data
readable by everyone); a folder that does not exist is said in one line; an archive an error
stopped half-way is removed."""

from __future__ import annotations

import argparse
import stat

import pytest
from clocks import FakeClock
from test_erase import ANNA, START, settings, world

from exobot.config import parse_config
from exobot.privacy.cli import run_privacy
from exobot.privacy.export import export_person
from exobot.privacy.session import privacy_session


def export_args(output) -> argparse.Namespace:  # noqa: ANN001 - a path or None
    return argparse.Namespace(action="export", address=ANNA, output=str(output))


async def test_an_existing_file_is_never_written_over(tmp_path, capsys):
    config = parse_config(settings(f"sqlite:///{tmp_path / 'exobot.db'}"), env={})
    existing = tmp_path / "precious.txt"
    existing.write_text("someone's file\n")
    existing.chmod(0o644)
    assert await run_privacy(config, export_args(existing)) == 2
    _, err = capsys.readouterr()
    assert err == (
        f"cannot write the archive {existing}: it already exists "
        "(remove it or give another --output)\n"
    )
    assert existing.read_text() == "someone's file\n"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644


async def test_a_missing_folder_is_said_in_one_line(tmp_path, capsys):
    config = parse_config(settings(f"sqlite:///{tmp_path / 'exobot.db'}"), env={})
    target = tmp_path / "no" / "such" / "anna.zip"
    assert await run_privacy(config, export_args(target)) == 2
    _, err = capsys.readouterr()
    assert err == f"cannot write the archive {target}: no such folder\n"


async def test_an_archive_stopped_half_way_is_removed(tmp_path, monkeypatch):
    config = parse_config(settings(f"sqlite:///{tmp_path / 'exobot.db'}"), env={})
    out = tmp_path / "anna.zip"
    async with privacy_session(config, FakeClock(START)) as session:
        await world(session)

        async def failing(subject):  # noqa: ANN001 - the plugins' export breaks mid-archive
            raise RuntimeError("the database went away")

        monkeypatch.setattr(session.plugins, "export", failing)
        with pytest.raises(RuntimeError):
            await export_person(session, ANNA, out)
    assert not out.exists()
