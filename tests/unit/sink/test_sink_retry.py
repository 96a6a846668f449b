from cdc_bridge.sink.retry import RetryPolicy


def test_backoff_grows_and_is_capped():
    p = RetryPolicy(initial_backoff_s=0.5, max_backoff_s=4, multiplier=2, jitter=0)
    assert [p.backoff(a) for a in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_jitter_stays_within_bounds():
    p = RetryPolicy(initial_backoff_s=1, max_backoff_s=1, jitter=0.1)
    assert all(0.9 <= p.backoff(3) <= 1.1 for _ in range(200))


def test_forever_never_gives_up():
    t = RetryPolicy.forever().tracker(clock=lambda: 0.0)
    assert all(t.failed() for _ in range(1000))


def test_max_attempts():
    t = RetryPolicy(max_attempts=3, jitter=0).tracker()
    assert t.failed() and t.failed() and not t.failed()
    assert t.attempts == 3


def test_max_elapsed():
    now = [0.0]
    t = RetryPolicy(initial_backoff_s=1, multiplier=1, jitter=0, max_elapsed_s=2.5).tracker(clock=lambda: now[0])
    assert t.failed()          # would sleep until 1.0
    now[0] = 1.0
    assert t.failed()          # until 2.0
    now[0] = 2.0
    assert not t.failed()      # 3.0 > 2.5
