"""Cancelling tasks once: a second request interrupts a task's own clean-up (psycopg's
cancelling of a query in the server, for one), which then ends in a warning and a closed
connection instead of cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

# How long a cancelled task may take to clean up before it is asked again (psycopg gives
# the server 5 s to end a cancelled query).
GRACE_SECONDS = 10.0


def cancel(tasks: Iterable[asyncio.Task]) -> None:
    """Ask each task to stop, unless it is done or already stopping (a gather that was
    cancelled has asked its children already)."""
    for task in tasks:
        if not task.done() and not task.cancelling():
            task.cancel()


async def cancel_and_wait(tasks: Iterable[asyncio.Task], grace: float = GRACE_SECONDS) -> None:
    """Cancel the tasks (once each) and wait until they end. One still running after `grace`
    seconds is asked again: a task can swallow a cancellation (Python 3.11's wait_for does
    when its timeout and the cancellation come together)."""
    tasks = list(tasks)
    cancel(tasks)
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
