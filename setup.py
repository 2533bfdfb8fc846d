"""Build hook: compile the gettext catalogs (.po → .mo) into every build.

The .mo files are never committed; `pip install .`, a wheel, the container image and an
editable install all get them from here (and `make` compiles them for the dev tree).
Everything else about the package is in pyproject.toml.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def _compile_catalogs() -> None:
    # Load exobot/catalogs.py by path: the package's own dependencies are not installed yet
    # (it needs only Babel, a build requirement).
    path = Path(__file__).resolve().parent / "exobot" / "catalogs.py"
    spec = importlib.util.spec_from_file_location("_exobot_catalogs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    module.compile_all()


class BuildPyWithCatalogs(build_py):
    """build_py that compiles the catalogs first, so package-data picks the .mo files up."""

    def run(self) -> None:
        _compile_catalogs()
        super().run()


if __name__ == "__main__":  # as setuptools runs it; a test loads the hook without building
    setup(cmdclass={"build_py": BuildPyWithCatalogs})
