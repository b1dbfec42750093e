from router.learning.budget import HourlyBudget


def test_caps_on_tokens_and_usd_over_a_sliding_hour():
    now = [0.0]
    b = HourlyBudget(tokens=100, usd=0.5, clock=lambda: now[0])
    assert b.allows()
    b.spend(60, 0.1)
    assert b.allows()
    b.spend(40, 0.1)  # 100 tokens: the token cap is reached
    assert not b.allows()
    now[0] = 1800.0
    assert not b.allows()  # still within the hour
    now[0] = 3600.5  # the first two spends have left the window
    assert b.allows() and b.state()["tokens"] == 0
    b.spend(1, 0.6)  # the USD cap alone stops it
    assert not b.allows() and b.state()["usd"] == 0.6


def test_no_caps_never_stops():
    b = HourlyBudget(None, None)
    b.spend(10**9, 10**6)
    assert b.allows()
