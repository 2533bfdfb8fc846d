"""Long runs (`make test-long`): every test module here is marked `long` (`pytestmark`),
which `make test` deselects (`-m "not long"` in pyproject.toml's addopts). Their figures are
printed in the terminal summary, so they show in `make test-long`'s output without `-s`."""

from __future__ import annotations

import pytest

# The reports the tests of this directory add (one text block each), printed at the end.
_REPORTS: list[str] = []


@pytest.fixture
def long_reports() -> list[str]:
    """Append a text block to have it printed in the terminal summary."""
    return _REPORTS


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    """Print the long runs' reports after the results."""
    if not _REPORTS:
        return
    terminalreporter.section("soak figures")
    for report in _REPORTS:
        terminalreporter.write_line(report)
        terminalreporter.write_line("")
