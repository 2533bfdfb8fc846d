"""Failed logins are limited per account and per client, in a sliding window."""

from __future__ import annotations

from exobot.web.ratelimit import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_is_blocked_after_its_failures_until_the_window_passes():
    clock = Clock()
    limiter = LoginLimiter(per_account=3, per_client=100, window=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("1.2.3.4", "@a:x") == 0
        limiter.failed("1.2.3.4", "@a:x")
    assert limiter.retry_after("5.6.7.8", "@A:x") == 60  # any client, case-folded account
    assert limiter.retry_after("1.2.3.4", "@b:x") == 0  # other accounts are fine
    clock.now += 30
    assert limiter.retry_after("1.2.3.4", "@a:x") == 30
    clock.now += 30
    assert limiter.retry_after("1.2.3.4", "@a:x") == 0


def test_a_client_guessing_many_accounts_is_blocked():
    clock = Clock()
    limiter = LoginLimiter(per_account=100, per_client=4, window=60, clock=clock)
    for n in range(4):
        limiter.failed("1.2.3.4", f"@u{n}:x")
    assert limiter.retry_after("1.2.3.4", "@new:x") == 60
    assert limiter.retry_after("9.9.9.9", "@new:x") == 0


def test_a_good_login_clears_the_account_but_not_the_client():
    clock = Clock()
    limiter = LoginLimiter(per_account=2, per_client=3, window=60, clock=clock)
    limiter.failed("1.2.3.4", "@a:x")
    limiter.failed("1.2.3.4", "@a:x")
    limiter.succeeded("@a:x")
    assert limiter.retry_after("5.6.7.8", "@a:x") == 0
    limiter.failed("1.2.3.4", "@b:x")
    assert limiter.retry_after("1.2.3.4", "@c:x") == 60
