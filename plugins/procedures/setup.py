"""Build hook: compile the plugin's gettext catalogs (.po → .mo) when it is built or installed,
so wheels, `pip install -e` and the container image all carry them (`.mo` is never committed).
Updating and checking them is `python -m exobot.catalogs --plugin plugins/procedures …`."""

import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

LOCALE = Path(__file__).resolve().parent / "exobot_procedures" / "locale"


def _compile() -> None:
    # Babel alone (a build requirement): exobot itself may not be installed in the build.
    for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=po.parent.parent.name)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        po.with_suffix(".mo").write_bytes(buffer.getvalue())


class BuildPy(build_py):
    """build_py that compiles the catalogs first."""

    def run(self) -> None:
        _compile()
        super().run()


class Develop(develop):
    """develop (legacy editable installs) that compiles the catalogs first."""

    def run(self) -> None:
        _compile()
        super().run()


setup(cmdclass={"build_py": BuildPy, "develop": Develop})
