"""Who has the next move on a ticket: us (the volunteers), the member, or nobody.

One pure function, so the chat's root messages, `!list`, the web's lists and the dashboard
all say the same thing."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from exobot.core.model import Status, Ticket

# A closed ticket waits for nobody: a member's mail reopens it, and then it waits for us.
_CLOSED = frozenset({Status.RESOLVED, Status.REJECTED})


class Waiting(StrEnum):
    """Whose move it is."""

    US = "us"
    MEMBER = "member"
    NOBODY = "nobody"


def waiting_on(
    ticket: Ticket,
    last_member_at: datetime | None = None,
    last_answer_at: datetime | None = None,
) -> Waiting:
    """Whose move it is on `ticket`.

    NOBODY for a resolved or rejected ticket; US when nothing was answered yet, or when the
    member wrote after our last reply or notice; MEMBER when our answer is the latest. The
    two times default to the ticket's own `last_member_mail_at` and `last_answer_at` when
    given as None (pass them explicitly to judge other data)."""
    if ticket.status in _CLOSED:
        return Waiting.NOBODY
    member = last_member_at if last_member_at is not None else ticket.last_member_mail_at
    answer = last_answer_at if last_answer_at is not None else ticket.last_answer_at
    if answer is None:
        return Waiting.US
    if member is not None and member > answer:
        return Waiting.US
    return Waiting.MEMBER
