"""What a process tree uses, read from Linux's /proc: children, command lines, CPU seconds and
memory (RSS, PSS). Shared by the benchmarks (bench/) and the soak (tests/long)."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct children of a process (Linux: /proc/PID/task/TID/children); [] if gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as file:
                found += [int(child) for child in file.read().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, depth first."""
    found = []
    for child in children(pid):
        found.append(child)
        found += descendants(child)
    return found


def cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def cpu_seconds(pid: int, reaped_children: bool = True) -> float:
    """User + system CPU seconds of a process (0 when it is gone), with those of its children
    it has already waited for (`reaped_children`)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15).
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and of every live process below it (a server's workers, e.g.
    PostgreSQL's backends), with the children each has already waited for."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in descendants(pid))


def forkservers(pid: int) -> list[int]:
    """The multiprocessing fork servers started by `pid` (the parse workers are their
    children)."""
    return [c for c in children(pid) if "multiprocessing.forkserver" in cmdline(c)]


def send_helpers(pid: int) -> list[int]:
    """The send helpers (exobot.mail.send_helper) that exobot process `pid` runs now."""
    return [c for c in children(pid) if "exobot.mail.send_helper" in cmdline(c)]


def parse_worker_cpu(pid: int) -> float:
    """CPU seconds of the parse workers of exobot process `pid`, the fork server included:
    the fork server's own and its reaped children's, plus every live worker's."""
    total = 0.0
    for server in forkservers(pid):
        total += cpu_seconds(server)
        total += sum(cpu_seconds(worker) for worker in descendants(server))
    return total


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB from /proc/PID/smaps_rollup; (0, 0) when it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def process_roles(main: int) -> list[tuple[int, str]]:
    """`main` (an exobot process) and every process below it, each with what it is: "exobot
    run", "fork server", "parse worker" (forks of the fork server, told apart by their parent
    since they share its command line), "resource tracker", "send helper", or the start of its
    command line."""
    servers = set(forkservers(main))
    workers = {worker for server in servers for worker in descendants(server)}
    roles = []
    for pid in [main, *descendants(main)]:
        if pid == main:
            role = "exobot run"
        elif pid in servers:
            role = "fork server"
        elif pid in workers:
            role = "parse worker"
        elif "multiprocessing.resource_tracker" in cmdline(pid):
            role = "resource tracker"
        elif "exobot.mail.send_helper" in cmdline(pid):
            role = "send helper"
        else:
            role = cmdline(pid)[:18] or "?"
        roles.append((pid, role))
    return roles
