"""The φ-accrual detector against statistics.NormalDist (the stdlib's normal model)."""

import math
import random
import statistics

import pytest

from hashring import PhiAccrual


def regular(detector, node, start, gap, count, jitter=0.0, seed=0):
    rnd = random.Random(seed)
    t = start
    for _ in range(count):
        detector.heartbeat(node, t)
        t += gap + rnd.uniform(-jitter, jitter)
    return t - gap        # the last heartbeat's time, roughly


def test_phi_matches_the_normal_model():
    detector = PhiAccrual(threshold=8, min_std=0.001)
    rnd = random.Random(5)
    times, t = [], 0.0
    for _ in range(200):
        times.append(t)
        detector.heartbeat("a", t)
        t += 0.1 + rnd.gauss(0, 0.01)
    gaps = [b - a for a, b in zip(times, times[1:])]
    model = statistics.NormalDist(statistics.fmean(gaps), statistics.pstdev(gaps))
    for silence in (0.05, 0.1, 0.11, 0.12, 0.13, 0.14):    # within 4 std: NormalDist.cdf is exact there
        expected = -math.log10(model.cdf(2 * model.mean - silence))    # P(X > silence), by symmetry
        assert detector.phi("a", times[-1] + silence) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_phi_grows_with_silence_and_crosses_the_threshold_once():
    detector = PhiAccrual(threshold=8)
    last = regular(detector, "a", 0.0, 0.1, 100, jitter=0.005)
    values = [detector.phi("a", last + k * 0.01) for k in range(200)]
    assert values == sorted(values) and values[0] < 0.1
    assert all(math.isfinite(v) for v in values)
    first = next(k for k, v in enumerate(values) if v >= 8)
    # Mean 0.1 s, std floored at min_std=0.1: suspect about 5.6 std after the mean.
    assert 0.55 < first * 0.01 < 0.75
    assert not detector.suspect("a", last + 0.3) and detector.suspect("a", last + 1.0)


def test_far_tail_stays_finite_and_monotone():
    detector = PhiAccrual()
    regular(detector, "a", 0.0, 1.0, 10)
    values = [detector.phi("a", 9.0 + s) for s in (5, 10, 50, 100, 1000, 10**6)]
    assert values == sorted(values) and all(math.isfinite(v) for v in values)
    assert values[-1] > 1e10


def test_acceptable_pause_and_first_gap():
    lax = PhiAccrual(acceptable_pause=3.0)
    strict = PhiAccrual()
    for d in (lax, strict):
        regular(d, "a", 0.0, 1.0, 20)
    assert lax.phi("a", 19.0 + 3.5) < 1 < strict.phi("a", 19.0 + 3.5)
    fresh = PhiAccrual(first_gap=2.0)
    fresh.heartbeat("b", 10.0)
    assert fresh.phi("b", 11.0) < 0.1 and fresh.suspect("b", 20.0)


def test_window_keeps_only_recent_gaps():
    detector = PhiAccrual(window=10, min_std=0.001)
    regular(detector, "a", 0.0, 5.0, 50)          # slow at first ...
    last = regular(detector, "a", 250.0, 0.1, 11)  # ... then ten gaps of 0.1 s
    assert detector.suspect("a", last + 1.0)


def test_nodes_are_independent_and_forgettable():
    detector = PhiAccrual()
    regular(detector, "a", 0.0, 0.1, 30)
    regular(detector, "b", 0.0, 1.0, 30)
    assert detector.suspect("a", 5.0) and not detector.suspect("b", 30.0)
    assert "a" in detector and detector.last_heartbeat("b") == pytest.approx(29.0)
    detector.forget("a")
    assert "a" not in detector
    with pytest.raises(KeyError):
        detector.phi("a", 5.0)


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(threshold=0), ValueError, "threshold"),
    (dict(threshold=float("nan")), ValueError, "threshold"),
    (dict(threshold="8"), TypeError, "threshold"),
    (dict(window=1), ValueError, "window"),
    (dict(window=2.5), TypeError, "window"),
    (dict(min_std=-1), ValueError, "min_std"),
    (dict(acceptable_pause=-0.1), ValueError, "acceptable_pause"),
    (dict(first_gap=0), ValueError, "first_gap"),
    (dict(first_gap=True), TypeError, "first_gap"),
])
def test_bad_settings_name_the_argument(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        PhiAccrual(**kwargs)


def test_bad_times_are_refused_and_change_nothing():
    detector = PhiAccrual()
    detector.heartbeat("a", 10.0)
    detector.heartbeat("a", 11.0)
    before = detector.phi("a", 12.0)
    for now, exc in ((9.0, ValueError), (float("inf"), ValueError), (None, TypeError), ("1", TypeError)):
        with pytest.raises(exc, match="now"):
            detector.heartbeat("a", now)
    assert detector.phi("a", 12.0) == before and detector.last_heartbeat("a") == 11.0


def test_tail_formula_joins_the_exact_one():
    from hashring.failover import _phi_of_late

    below, above = _phi_of_late(24.999999), _phi_of_late(25.000001)
    assert above == pytest.approx(below, rel=2e-3)
    assert _phi_of_late(-40) == 0.0 and _phi_of_late(0) == pytest.approx(math.log10(2))
