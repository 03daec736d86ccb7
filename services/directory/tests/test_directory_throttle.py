"""Unit tests: throttling with an injected clock — slows attackers, never locks the owner out."""

from directory.throttle import Throttle


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def make(**kw):
    clock = Clock()
    return Throttle(clock=clock, **kw), clock


def test_free_failures_then_exponential_delay():
    throttle, clock = make(free_failures=3, base_delay=1, max_delay=60)
    for _ in range(3):
        assert throttle.retry_after("a", "ip1") == 0
        throttle.record_failure("a", "ip1")
    assert throttle.retry_after("a", "ip1") == 1
    clock.t += 1
    assert throttle.retry_after("a", "ip1") == 0
    throttle.record_failure("a", "ip1")
    assert throttle.retry_after("a", "ip1") == 2
    for _ in range(20):
        clock.t += 100
        throttle.record_failure("a", "ip1")
    assert throttle.retry_after("a", "ip1") == 60  # capped


def test_attacker_does_not_lock_out_owner_elsewhere():
    throttle, _ = make(free_failures=3)
    for _ in range(50):
        throttle.record_failure("victim", "attacker")
    assert throttle.retry_after("victim", "attacker") > 0
    assert throttle.retry_after("victim", "owner") == 0


def test_success_resets_pair():
    throttle, _ = make(free_failures=2)
    for _ in range(5):
        throttle.record_failure("a", "ip")
    throttle.record_success("a", "ip")
    assert throttle.retry_after("a", "ip") == 0


def test_password_spraying_limited_per_address():
    throttle, clock = make(address_max_failures=10, address_window=100)
    for i in range(10):
        throttle.record_failure(f"user{i}", "sprayer")
    assert throttle.retry_after("user99", "sprayer") > 0
    assert throttle.retry_after("user99", "someone-else") == 0
    clock.t += 101
    assert throttle.retry_after("user99", "sprayer") == 0


def test_distributed_attack_gets_tarpit_not_lockout():
    throttle, _ = make(account_tarpit_threshold=5, tarpit_delay=1.5)
    delays = [throttle.record_failure("victim", f"bot{i}") for i in range(8)]
    assert delays[:5] == [0] * 5 and delays[-1] == 1.5
    assert throttle.retry_after("victim", "owner") == 0


def test_prune_keeps_memory_bounded():
    throttle, clock = make(max_entries=10, max_delay=10, address_window=10, account_window=10)
    for i in range(30):
        throttle.record_failure(f"u{i}", f"ip{i}")
    clock.t += 100
    throttle.record_failure("x", "y")
    assert len(throttle._pairs) <= 2
