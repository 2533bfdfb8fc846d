"""The parsing sandbox: worker processes bounded in time and memory, replaced when they fail."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest
from clocks import FakeClock

from exobot.mail.parse import MailParseError, parse_mail
from exobot.mail.sandbox import MB, ParseRefused, ParseSandbox, SandboxSettings, dumps

MAIL = (
    b"From: Marta <marta@example.net>\r\nTo: suport@example.org\r\nSubject: Hola\r\n"
    b"Message-ID: <m1@example.net>\r\n\r\nNo tinc connexi\xc3\xb3.\r\n"
)


def hostile_sandbox(**settings) -> ParseSandbox:
    return ParseSandbox(SandboxSettings(parser="parse_hooks:hostile", **settings))


@pytest.fixture
async def sandbox():
    box = hostile_sandbox(timeout=1.0, memory=256 * MB, workers=2)
    yield box
    await box.close()


def test_parsed_mail_survives_pickling():
    parsed = parse_mail(MAIL)
    again = pickle.loads(dumps(parsed))
    assert again == parsed
    assert dict(again.headers) == dict(parsed.headers)
    with pytest.raises(TypeError):
        again.headers["x"] = ("y",)  # still read-only


async def test_parses_like_the_parser(sandbox):
    parsed = await sandbox.parse(MAIL)
    assert parsed == parse_mail(MAIL)
    assert parsed.subject == "Hola" and "connexió" in parsed.body


async def test_not_a_mail_is_reported_as_such(sandbox):
    with pytest.raises(MailParseError):
        await sandbox.parse(b"\r\n\r\nno headers at all")


@pytest.mark.parametrize(
    ("marker", "timeout", "reason"),
    [
        (b"SLOW-PARSE", 1.0, "parsing took longer than 1 s"),  # killed at the time limit
        # Stopped at the memory limit: filling the worker's address space (the mail's 256 MB
        # and the language models' reserve) takes seconds on a busy machine, so the time
        # limit is far away here; the memory limit must be what stops it.
        (b"HOG-PARSE", 120.0, "parsing needed more than 256 MB"),
        (b"CRASH-PARSE", 1.0, "parsing crashed (SIGSEGV)"),  # a crashing worker is replaced
    ],
)
async def test_a_refused_parse_says_why_and_the_next_mail_parses(marker, timeout, reason):
    sandbox = hostile_sandbox(timeout=timeout, memory=256 * MB, workers=2)
    try:
        with pytest.raises(ParseRefused) as refused:
            await sandbox.parse(MAIL + marker)
        assert refused.value.reason == reason
        assert (await sandbox.parse(MAIL)).subject == "Hola"
    finally:
        await sandbox.close()


async def test_the_event_loop_keeps_running_during_a_runaway(sandbox):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(
            sandbox.parse(MAIL + b"SLOW-PARSE"), sandbox.parse(MAIL), return_exceptions=True
        )
    finally:
        task.cancel()
    assert isinstance(results[0], ParseRefused)
    assert results[1].subject == "Hola"  # the other worker parsed meanwhile
    assert ticks >= 10  # the loop ran while a worker spun for a whole second


async def test_close_stops_a_parse_in_progress_promptly():
    box = hostile_sandbox(timeout=600.0, workers=1)
    parse = asyncio.create_task(box.parse(MAIL + b"SLOW-PARSE"))
    await asyncio.sleep(0.5)  # let it reach the worker
    started = time.monotonic()
    await box.close()
    with pytest.raises(ParseRefused) as refused:
        await asyncio.wait_for(parse, 60)
    assert refused.value.reason == "the helpdesk is stopping"
    assert time.monotonic() - started < 60  # not the 600 s limit
    with pytest.raises(ParseRefused):
        await box.parse(MAIL)


async def test_warm_up_starts_every_worker_before_the_first_mail():
    sandbox = ParseSandbox(SandboxSettings(workers=2))
    try:
        await sandbox.warm_up()
        assert len(sandbox._all) == 2
        assert all(worker.process.is_alive() for worker in sandbox._all)
        parsed = await sandbox.parse(b"From: a@example.net\r\nSubject: hola\r\n\r\nbody\r\n")
        assert parsed.subject == "hola"
        assert len(sandbox._all) == 2  # the mail used a warm worker, none was added
    finally:
        await sandbox.close()


async def test_a_worker_that_starts_after_close_is_stopped_at_once():
    box = hostile_sandbox(workers=1)
    await box.warm_up()
    await box.close()
    with pytest.raises(RuntimeError):
        await asyncio.to_thread(box._spawn)  # close() ran while it started
    assert box._all == set()
    assert multiprocessing_children_alive(box) == []


async def test_a_wait_ends_soon_after_close_even_for_a_worker_close_did_not_know():
    box = hostile_sandbox(timeout=600.0, workers=1)
    parse = asyncio.create_task(box.parse(MAIL + b"SLOW-PARSE"))
    while not box._all:  # the worker has started and is spinning on the mail
        await asyncio.sleep(0.05)
    (worker,) = box._all
    box._all.clear()  # as when close() raced with its start
    await box.close()
    with pytest.raises(ParseRefused) as refused:
        await asyncio.wait_for(parse, 60)  # not the 600 s limit
    assert refused.value.reason == "the helpdesk is stopping"
    # Killed by the wait itself: a process object closes only once its process has ended.
    assert worker.process._closed


def multiprocessing_children_alive(box: ParseSandbox) -> list:
    import multiprocessing

    return [p for p in multiprocessing.active_children() if p.name == "exobot-parse"]


# ------------------------------------------------------------------ only while there is mail


def fork_server_pid():
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid


def gone(pid: int) -> bool:
    """The process has ended (and was reaped by whoever was its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def wait_until(condition, what: str, deadline: float = 60.0) -> None:
    """Poll a condition (not a fixed sleep) with a generous deadline."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"not within {deadline:g} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def clocked():
    clock = FakeClock()
    box = hostile_sandbox(timeout=600.0, workers=2, idle_seconds=60.0)
    box.clock = clock
    box._last_used = clock.now()
    yield box, clock
    await box.close()


async def test_no_worker_starts_before_the_first_mail(clocked):
    box, clock = clocked
    clock.advance(hours=5)
    assert not await box.retire_idle()  # nothing to retire: nothing ever started
    assert box._all == set()
    assert multiprocessing_children_alive(box) == []
    assert (await box.parse(MAIL)).subject == "Hola"
    assert len(box._all) == 1  # one mail, one worker: the other slot starts when needed


async def test_idle_workers_retire_with_the_fork_server_and_the_next_mail_starts_them_again(
    clocked,
):
    box, clock = clocked
    await asyncio.gather(box.parse(MAIL), box.parse(MAIL))
    workers = [worker.process.pid for worker in box._all]
    server = fork_server_pid()
    assert len(workers) == 2 and server is not None
    clock.advance(seconds=59)
    assert not await box.retire_idle()  # not idle long enough
    assert len(box._all) == 2
    clock.advance(seconds=2)
    assert await box.retire_idle()
    assert box._all == set() and box.retirements == 1
    assert fork_server_pid() is None  # the fork server stopped too (no other sandbox runs)
    await wait_until(lambda: all(gone(pid) for pid in [*workers, server]), "processes ended")
    # The next mail starts a fork server and a worker again, and is parsed by it.
    assert (await box.parse(MAIL)).subject == "Hola"
    assert len(box._all) == 1 and fork_server_pid() not in (None, server)


async def test_a_mail_parsed_meanwhile_moves_the_deadline(clocked):
    box, clock = clocked
    await box.parse(MAIL)
    clock.advance(seconds=50)
    await box.parse(MAIL)
    clock.advance(seconds=50)
    assert not await box.retire_idle()  # 50 s since the last mail
    clock.advance(seconds=11)
    assert await box.retire_idle()


async def test_workers_busy_with_a_mail_never_retire(clocked):
    box, clock = clocked
    await box.parse(MAIL)  # both slots used once: one worker started
    slow = asyncio.create_task(box.parse(MAIL + b"SLOW-PARSE"))
    await wait_until(lambda: box._parsing == 1 and box._idle.qsize() < box.workers, "busy")
    clock.advance(hours=2)
    assert not await box.retire_idle()
    assert box._all and all(worker.process.is_alive() for worker in box._all)
    await box.close()
    with pytest.raises(ParseRefused):
        await asyncio.wait_for(slow, 60)


async def test_a_mail_arriving_while_the_workers_retire_is_parsed_once_by_a_fresh_worker(clocked):
    box, clock = clocked
    await asyncio.gather(box.parse(MAIL), box.parse(MAIL))
    old = {worker.process.pid for worker in box._all}
    clock.advance(minutes=2)
    retiring = asyncio.create_task(box.retire_idle())
    parse = asyncio.create_task(box.parse(MAIL))
    # One step of each: the retirement has taken every slot (its thread stops the workers),
    # the mail waits for one. The retirement's end needs at least two more steps of the loop.
    await asyncio.sleep(0)
    assert box._retiring and box._idle.qsize() == 0 and not parse.done()
    assert await retiring
    parsed = await asyncio.wait_for(parse, 60)
    assert parsed.subject == "Hola"
    (worker,) = box._all  # one fresh worker, which parsed it once
    assert worker.process.pid not in old and worker.tasks == 1


async def test_the_workers_retire_by_themselves():
    """Without a fake clock: the idle watch retires them once `idle_seconds` have passed (the
    wait is for that to happen, with a generous deadline, not a fixed sleep)."""
    box = hostile_sandbox(workers=1, idle_seconds=0.2)
    try:
        await box.parse(MAIL)
        (pid,) = [worker.process.pid for worker in box._all]
        await wait_until(lambda: box.retirements == 1, "retired")
        assert box._all == set()
        await wait_until(lambda: gone(pid), "worker ended")
        assert (await box.parse(MAIL)).subject == "Hola"
    finally:
        await box.close()


async def test_a_follower_like_instance_that_parses_nothing_never_has_workers():
    box = ParseSandbox(SandboxSettings(workers=2))
    await box.close()  # an instance that stops without ever parsing
    assert box._all == set() and box._idle is None


WORKER_SCRIPT = """
import asyncio, os, sys
with open(sys.argv[1], "a") as log:  # every run of this module, as __main__ or again
    log.write(f"{os.getpid()}\\n")

from exobot.mail.sandbox import ParseSandbox, SandboxSettings

async def main():
    box = ParseSandbox(SandboxSettings(workers=2, warm_up=None, idle_seconds=0))
    mail = b"From: a@example.net\\r\\nSubject: Hola\\r\\n\\r\\nBon dia.\\r\\n"
    parsed = await asyncio.gather(*(box.parse(mail) for _ in range(4)))
    await box.close()
    print(parsed[0].subject)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_workers_never_run_the_main_module_again(tmp_path):
    """`exobot run` is a script: a worker that ran it again would import the whole
    application (seconds of CPU and 100 MB per worker); CPython's fork server does not
    preload it, so the sandbox's preload turns that re-run off."""
    import subprocess
    import sys

    script, log = tmp_path / "main_script.py", tmp_path / "runs.log"
    script.write_text(WORKER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hola"
    assert len(log.read_text().split()) == 1  # the script itself, no worker
