"""The operator's view of quarantined mail: list, show, retry, discard."""

from __future__ import annotations

import sys

from exobot.app import App
from exobot.config import Config
from exobot.db import inbound, outbox


async def run_quarantine(config: Config, action: str, inbound_id: int | None) -> int:
    """Carry out one quarantine action and print its result; returns the exit status (2 for
    a misuse: an id to `list`, none to the others)."""
    if (action == "list") != (inbound_id is None):
        which = "it takes no id" if action == "list" else "say which mail (its id from `list`)"
        print(f"quarantine {action}: {which}", file=sys.stderr)
        return 2
    app = App(config)
    await app.build()
    try:
        repo = app.repository
        if action == "list":
            async with repo.connection() as conn:
                items = await inbound.list_inbound(conn, inbound.QUARANTINED)
                stored = await inbound.count_by_state(conn)
                queued = await outbox.counts(conn)
            print("stored mail: " + _summary(stored))
            print("outbox: " + _summary({f"{k} {s}": n for (k, s), n in queued.items()}))
            if not items:
                print("quarantine is empty")
            for item in items:
                print(
                    f"{item.id:>6}  {item.received_at:%Y-%m-%d %H:%M}  {item.size:>9} B  "
                    f"{(item.sender or '?')[:40]:<40}  {(item.error or '')[:80]}"
                )
            return 0
        async with repo.connection() as conn:
            item = await inbound.get_inbound(conn, inbound_id)
        if item is None or (action != "show" and item.state != inbound.QUARANTINED):
            print(f"no quarantined mail with id {inbound_id}")
            return 1
        if action == "show":
            async with repo.connection() as conn:
                raw, _state = await inbound.load_raw(conn, inbound_id)
            print(f"id {item.id}, state {item.state}, attempts {item.attempts}")
            print(f"mailbox {item.mailbox}, UIDVALIDITY {item.uidvalidity}, UID {item.uid}")
            print(f"error: {item.error}")
            print("--- first 4 kB of the raw mail ---")
            print(raw[:4096].decode("utf-8", errors="replace"))
            return 0
        if action == "discard":
            async with repo.connection() as conn:
                discarded = await inbound.discard(conn, inbound_id)
            if not discarded:  # retried or discarded meanwhile
                print(f"no quarantined mail with id {inbound_id}")
                return 1
            print(f"mail {inbound_id} discarded (kept in the database, never processed)")
            return 0
        state = await app.processor.retry(inbound_id)
        print(f"mail {inbound_id}: {state}")
        return 0 if state != inbound.QUARANTINED else 1
    finally:
        await app.processor.parser.close()
        await app.repository.close()


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"
