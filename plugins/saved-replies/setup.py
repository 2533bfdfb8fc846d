"""Build hook: compile the plugin's gettext catalogs (.po → .mo) when it is built or installed,
so wheels, `pip install -e` and the container image all carry them (`.mo` is never committed)."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = Path(__file__).resolve().parent


def _compile() -> None:
    # Loaded by path: the package's __init__ imports exobot, which the build may not have.
    path = HERE / "exobot_saved_replies" / "catalogs.py"
    spec = importlib.util.spec_from_file_location("_saved_replies_catalogs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.compile_all()


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
