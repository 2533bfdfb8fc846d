"""Failed logins, counted per client address and per account, in a sliding window."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class LoginLimiter:
    """Refuses further attempts once a client or an account has failed too often lately.

    Kept in memory: a restart forgets the counts, which only gives an attacker a few more
    guesses per restart while costing nothing on every request."""

    def __init__(
        self,
        per_account: int = 5,
        per_client: int = 20,
        window: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"account": per_account, "client": per_client}
        self.window = window
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        failures = self._failures[key]
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures

    def retry_after(self, client: str, account: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        wait = 0.0
        for key in (("client", client), ("account", account.lower())):
            failures = self._recent(key)
            if len(failures) >= self.limits[key[0]]:
                wait = max(wait, failures[0] + self.window - self.clock())
        return wait

    def failed(self, client: str, account: str) -> None:
        """Count one failed attempt."""
        now = self.clock()
        self._failures[("client", client)].append(now)
        self._failures[("account", account.lower())].append(now)

    def succeeded(self, account: str) -> None:
        """A good login clears the account's count (not the client's)."""
        self._failures.pop(("account", account.lower()), None)
