"""Failed password logins, counted per account and per client address, in a sliding window.

Two limits with different jobs:
- an account's own limit (5 failures in 15 minutes) stops guessing one account's password,
  from anywhere, and applies to everybody;
- a client's limit (20 failures in 15 minutes, on any accounts) stops spraying: once over it,
  that client may still try the accounts of *operators* (each still under its own limit),
  but no one else's, and never costs the homeserver a call for them. Behind a proxy many
  people share one address, so a spray from it must not lock the real operators out: the
  right password of an operator whose own count is under its limit always gets through.

Memory is bounded: at most `max_keys` accounts and `max_keys` clients are tracked (the least
recently failed are forgotten first, expired ones before anyone else), each with at most its
limit of timestamps, and reading a count never creates an entry.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_KEYS = 10_000
MAX_KEY_CHARS = 255


class _Counts:
    """Recent failure times per key, bounded in keys and in times per key."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` is under its limit again (0: it is)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        self._expire(key, times, now)
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - now)

    def add(self, key: str, now: float) -> None:
        """Count one failure of `key`."""
        times = self._times.get(key)
        if times is None:
            self._make_room(now)
            times = self._times[key] = deque(maxlen=self.limit)  # older ones decide nothing
        times.append(now)
        self._times.move_to_end(key)

    def forget(self, key: str) -> None:
        """Clear `key`'s count."""
        self._times.pop(key, None)

    def _expire(self, key: str, times: deque[float], now: float) -> None:
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._times[key]

    def _make_room(self, now: float) -> None:
        # The front holds the least recently failed: drop the expired ones there, then, if
        # still full, the oldest (its count is the least likely to matter).
        horizon = now - self.window
        while self._times:
            key, times = next(iter(self._times.items()))
            if times[-1] > horizon and len(self._times) < self.max_keys:
                break
            del self._times[key]


class LoginLimiter:
    """Decides whether a password attempt may be checked, and counts the failed ones.

    Kept in memory: a restart forgets the counts, which only gives an attacker a few more
    guesses per restart while costing nothing on every request."""

    def __init__(
        self,
        per_account: int = 5,
        per_client: int = 20,
        window: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.clock = clock
        self.accounts = _Counts(per_account, window, max_keys)
        self.clients = _Counts(per_client, window, max_keys)

    def retry_after(self, client: str, account: str, *, operator: bool = False) -> float:
        """Seconds until an attempt on `account` from `client` may be checked (0: now).

        `account` is the canonical Matrix id; `operator` says whether it is an operator's: a
        client over its limit may still try operators' accounts (each under its own limit)."""
        now = self.clock()
        wait = self.accounts.wait(_key(account), now)
        if wait > 0 or operator:
            return wait
        return self.clients.wait(_key(client), now)

    def failed(self, client: str, account: str) -> None:
        """Count one failed attempt against the account and the client."""
        now = self.clock()
        self.accounts.add(_key(account), now)
        self.clients.add(_key(client), now)

    def succeeded(self, account: str) -> None:
        """A good login clears the account's count (not the client's)."""
        self.accounts.forget(_key(account))

    def tracked(self) -> int:
        """How many accounts and clients are tracked now (memory is bounded by this)."""
        return len(self.accounts) + len(self.clients)


def _key(text: str) -> str:
    return text[:MAX_KEY_CHARS].lower()
