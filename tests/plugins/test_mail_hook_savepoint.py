"""A new-mail hook's savepoint is begun at its first statement, and only then."""

from __future__ import annotations

from exobot.plugins.manager import _SavepointOnUse


class _Savepoint:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def commit(self) -> None:
        self.log.append("release")

    async def rollback(self) -> None:
        self.log.append("rollback")


class _Connection:
    """Records what the hook's view asks of the transaction."""

    dialect = "fake"

    def __init__(self) -> None:
        self.log: list[str] = []

    async def begin_nested(self) -> _Savepoint:
        self.log.append("savepoint")
        return _Savepoint(self.log)

    async def execute(self, statement: str) -> str:
        self.log.append(statement)
        return statement


async def test_a_hook_that_runs_no_statement_begins_no_savepoint() -> None:
    connection = _Connection()
    view = _SavepointOnUse(connection)
    assert view.dialect == "fake"  # other attributes pass through
    await view.end(keep=True)
    await _SavepointOnUse(connection).end(keep=False)
    assert connection.log == []


async def test_the_savepoint_comes_before_the_first_statement_once() -> None:
    connection = _Connection()
    view = _SavepointOnUse(connection)
    assert await view.execute("one") == "one"
    await view.execute("two")
    await view.end(keep=True)
    assert connection.log == ["savepoint", "one", "two", "release"]


async def test_a_failed_hook_rolls_back_to_its_savepoint() -> None:
    connection = _Connection()
    view = _SavepointOnUse(connection)
    await view.execute("one")
    await view.end(keep=False)
    assert connection.log == ["savepoint", "one", "rollback"]
