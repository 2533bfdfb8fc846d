"""Real Request Tracker servers (Debian's RT 5 and RT 4.4) for the importer's tests.

Session-scoped `rt5` and `rt4`: a started RtServer (devstack/rt.py), seeded once per session
by devstack/rt_seed.py; what the seed made is `rt5.seeded` (a `Seeded`). Tests must not
change them: a test that changes RT takes `rt5_fresh` / `rt4_fresh` (a new seeded server of
its own) or starts what it needs with `rt_factory(version=5, seed=False)`.

They skip, with the reason, only when Debian has no Request Tracker package here; when the
package exists but is not installed (`make stack` not run), and always under CI (`CI` set),
a missing RT fails the test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.rt import RtServer, rt_installed
from devstack.rt_install import available
from devstack.rt_seed import seed


def _require(version: int) -> None:
    """Skip or fail when RT `version` cannot run here (see the module docstring)."""
    if rt_installed(version):
        return
    if os.environ.get("CI"):
        pytest.fail(f"request-tracker{version} is not installed under CI (make stack)")
    if not available(version):
        pytest.skip(f"Debian has no request-tracker{version} package here: RT {version} tests skip")
    pytest.fail(f"request-tracker{version} is not installed: run `make stack`")


class _Servers:
    """Starts RT servers in private directories and stops them all at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[RtServer, Path]] = []

    def start(self, version: int = 5, seed_it: bool = True) -> RtServer:
        _require(version)
        # Not under pytest's temporary root, like tests/stack_fixtures.py: a later pytest
        # session makes that root private while this one may still use it.
        directory = Path(tempfile.mkdtemp(prefix=f"exobot-rt{version}-"))
        server = RtServer.start(directory, version=version)
        self.started.append((server, directory))
        if seed_it:
            server.seeded = seed(server)
        return server

    def stop_all(self) -> None:
        for server, directory in reversed(self.started):
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)
        self.started.clear()


@pytest.fixture(scope="session")
def _rt_session_servers() -> Iterator[_Servers]:
    servers = _Servers()
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope="session")
def rt5(_rt_session_servers) -> RtServer:
    """RT 5 (REST 1.0 and REST 2), seeded (`rt5.seeded`), shared by the session: read only."""
    return _rt_session_servers.start(5)


@pytest.fixture(scope="session")
def rt4(_rt_session_servers) -> RtServer:
    """RT 4.4 (REST 1.0; `rt4.rest2` is None), seeded (`rt4.seeded`), shared: read only."""
    return _rt_session_servers.start(4)


@pytest.fixture
def rt_factory() -> Iterator[Callable[..., RtServer]]:
    """`rt_factory(version=5, seed_it=True)` starts a server of the test's own (stopped after)."""
    servers = _Servers()
    try:
        yield servers.start
    finally:
        servers.stop_all()


@pytest.fixture
def rt5_fresh(rt_factory) -> RtServer:
    """A seeded RT 5 of this test alone, which it may change."""
    return rt_factory(5)


@pytest.fixture
def rt4_fresh(rt_factory) -> RtServer:
    """A seeded RT 4.4 of this test alone, which it may change."""
    return rt_factory(4)
