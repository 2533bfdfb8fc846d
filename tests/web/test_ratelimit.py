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


def test_a_spray_from_one_address_does_not_lock_an_operator_out():
    clock = Clock()
    limiter = LoginLimiter(per_account=5, per_client=20, window=900, clock=clock)
    proxy = "10.0.0.1"  # behind the TLS proxy everybody shares this address
    for n in range(20):
        assert limiter.retry_after(proxy, f"@random{n}:x") == 0
        limiter.failed(proxy, f"@random{n}:x")
    # Anybody else's account from that address now waits (a spray gets no further)...
    assert limiter.retry_after(proxy, "@random99:x") == 900
    # ...but an operator's account, under its own limit, may still be tried and log in.
    assert limiter.retry_after(proxy, "@anna:x", operator=True) == 0
    limiter.succeeded("@anna:x")
    assert limiter.retry_after("10.9.9.9", "@random99:x") == 0  # other addresses are fine


def test_a_brute_force_on_an_operator_is_still_stopped():
    clock = Clock()
    limiter = LoginLimiter(per_account=5, per_client=20, window=900, clock=clock)
    for _ in range(5):
        assert limiter.retry_after("10.0.0.1", "@anna:x", operator=True) == 0
        limiter.failed("10.0.0.1", "@anna:x")
    for client in ("10.0.0.1", "192.0.2.7"):
        assert limiter.retry_after(client, "@anna:x", operator=True) == 900
    clock.now += 900
    assert limiter.retry_after("10.0.0.1", "@anna:x", operator=True) == 0


def test_memory_stays_bounded_whatever_is_tried():
    clock = Clock()
    limiter = LoginLimiter(per_account=5, per_client=20, window=900, clock=clock, max_keys=100)
    for n in range(5000):
        limiter.failed(f"198.51.{n // 256}.{n % 256}", "@" + "u" * 10_000 + f"{n}:x")
        assert limiter.retry_after(f"203.0.113.{n % 256}", f"@nobody{n}:x") == 0
    assert limiter.tracked() <= 200  # 100 accounts and 100 clients at most
    # One account failing again and again keeps only as many times as its limit needs.
    for _ in range(1000):
        limiter.failed("192.0.2.1", "@anna:x")
    assert len(limiter.accounts._times["@anna:x"]) == 5
    # Reading never creates an entry; expired entries go first when room is needed.
    before = limiter.tracked()
    for n in range(1000):
        limiter.retry_after(f"2001:db8::{n:x}", f"@reader{n}:x")
    assert limiter.tracked() == before
    clock.now += 901
    limiter.failed("192.0.2.2", "@bernat:x")
    assert limiter.retry_after("192.0.2.1", "@anna:x") == 0
    assert limiter.accounts.wait("@bernat:x", clock.now) == 0  # 1 failure: under the limit


def test_the_recently_failing_outlive_a_flood_of_other_keys():
    clock = Clock()
    limiter = LoginLimiter(per_account=2, per_client=1000, window=900, clock=clock, max_keys=50)
    limiter.failed("192.0.2.1", "@anna:x")
    limiter.failed("192.0.2.1", "@anna:x")
    assert limiter.retry_after("192.0.2.1", "@anna:x") == 900
    for n in range(49):  # fills the table up to its size: nothing is dropped yet
        limiter.failed("192.0.2.1", f"@u{n}:x")
    assert limiter.retry_after("192.0.2.1", "@anna:x") == 900
