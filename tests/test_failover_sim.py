"""The failover controller under a deterministic simulation (tests/failover_sim.py).

Seed sweeps in three modes (``HASHRING_SIM_SEEDS`` sets how many: tolerant N, nocrash and
chaos N // 3 each; default 80), determinism, scripted scenarios, proof that the checker
catches a broken data path, and minimal reproductions of the controller bugs the
simulation found (all fixed; a new one goes into KNOWN_BUGS while it is open). ``HASHRING_SIM_SOAK=N``
adds a slow soak of N more seeds per mode.
"""

import os
import subprocess
import sys
from dataclasses import replace

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import failover_sim as fsim  # noqa: E402
from failover_sim import Sim, SimConfig, Violation  # noqa: E402

SEEDS = int(os.environ.get("HASHRING_SIM_SEEDS", "80"))
SOAK = int(os.environ.get("HASHRING_SIM_SOAK", "0"))

# Controller bugs the simulation found, by violation code. A seed that fails with one of
# these codes is an expected failure until failover.py is fixed; any other failure fails.
# Remove an entry once its bug is fixed, so that a regression fails again.
KNOWN_BUGS: dict = {}      # all found so far are fixed: see the test_bug_* regressions below

# The world without random faults: scripted scenarios add exactly what they test.
QUIET = SimConfig(random_faults=False, controller_faults=False, message_chaos=False)


def run_or_xfail_known(seed, config):
    """Run one seed; an expected failure if it trips a known controller bug."""
    sim = Sim(seed, config)
    try:
        return sim.run()
    except Violation as exc:
        if exc.code in KNOWN_BUGS:
            pytest.xfail(f"known controller bug {KNOWN_BUGS[exc.code]} -- {str(exc).splitlines()[0]}")
        raise


# --- seed sweeps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(SEEDS))
def test_seed_within_tolerance(seed):
    """One faulty node at a time (crash, pause, cut, slow links) plus controller crashes
    (some mid-write), pauses and message chaos: every invariant, then liveness. Odd seeds
    also restart crashed nodes before they can be convicted; every other pair of seeds
    sends no incarnation with heartbeats, so restarts show only as silence and positions."""
    result = run_or_xfail_known(seed, SimConfig(mode="tolerant", fast_restart=seed % 2 == 1,
                                                incarnations=seed // 2 % 2 == 0))
    assert result.acked > 0 and result.faults


@pytest.mark.parametrize("seed", range(SEEDS // 3))
def test_seed_overlapping_pauses_and_cuts(seed):
    """Any number of pauses, cuts and slow links at once, no crash: nobody loses memory,
    so nothing acknowledged may be lost, and everything recovers once the faults stop."""
    run_or_xfail_known(seed, SimConfig(mode="nocrash"))


@pytest.mark.parametrize("seed", range(SEEDS // 3))
def test_seed_chaos_beyond_tolerance(seed):
    """Everything at once, crashes included: the invariants that survive losing data (one
    primary per epoch, epochs and fences only grow, no stale-epoch commit others lack)."""
    run_or_xfail_known(seed, SimConfig(mode="chaos"))


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="set HASHRING_SIM_SOAK=N to soak N more seeds per mode")
@pytest.mark.parametrize("mode", ["tolerant", "nocrash", "chaos"])
@pytest.mark.parametrize("seed", range(SEEDS, SEEDS + SOAK))
def test_soak(mode, seed):
    run_or_xfail_known(seed, SimConfig(mode=mode))


# --- determinism --------------------------------------------------------------------------------

SHORT = SimConfig(duration=12.0)


def run_digest(seed, config=SHORT):
    """The trace digest, step count and trace tail of a run (failing runs too)."""
    sim = Sim(seed, config)
    try:
        sim.run()
    except Violation:
        pass
    return sim.digest, sim.steps, sim.trace


def test_same_seed_same_trace():
    first = run_digest(7)
    assert run_digest(7) == first
    assert run_digest(8)[0] != first[0]


def test_trace_does_not_depend_on_the_hash_seed():
    """Set iteration order of strings changes with PYTHONHASHSEED; the simulation must not."""
    code = ("import failover_sim as f\n"
            "s = f.Sim(3, f.SimConfig(duration=8.0))\n"
            "try:\n    s.run()\n"
            "except f.Violation:\n    pass\n"
            "print(s.digest, s.steps)\n")
    outs = set()
    for hash_seed in ("1", "12345"):
        path = TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=path)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True, cwd=TESTS).stdout)
    assert len(outs) == 1


def test_known_bug_codes_are_codes():
    assert set(KNOWN_BUGS) <= set(fsim.CODES)


def test_a_violation_names_seed_time_and_recent_events():
    sim = Sim(0, QUIET)
    sim.run_until(1.0)
    with pytest.raises(Violation) as info:
        sim._violation("made up for the test")
    text = str(info.value)
    assert "seed=0" in text and "t=1.0000" in text and "--seed 0 --mode tolerant" in text
    assert "leads p" in text                      # the trace tail is there


# --- scripted scenarios --------------------------------------------------------------------------

def test_kill_the_primary_once():
    sim = Sim(1, QUIET)
    sim.run_until(3.0)
    p = 0
    before = sim.record(p)
    acked = len(sim.acked[p])
    sim.crash_node(before.primary, QUIET.hard_timeout + 1.5)
    sim.run_until(10.0)
    (failover,) = sim.events_of("failover", p)
    assert failover.old_primary == before.primary and failover.new_primary != before.primary
    assert failover.epoch == before.epoch + 1
    assert failover.time - 3.0 < 1.0                    # φ convicts well before hard_timeout
    assert len(sim.acked[p]) > acked + 10               # the new primary commits
    result = sim.finish()                               # liveness, and the final primary holds every ack
    assert sim.record(p).primary is not None and result.heal_delay is not None


def test_paused_primary_resumes_and_its_writes_are_refused_by_epoch():
    """Paused past the timeout, its peers' messages lost meanwhile (full buffers), so it
    resumes believing it leads: it appends the writes queued for it under its old epoch,
    the backups refuse them as stale, it steps down, and none of them is ever acknowledged."""
    cfg = QUIET
    sim = Sim(2, cfg)
    sim.run_until(3.0)
    p = 1
    old = sim.record(p)
    primary = old.primary
    pause = cfg.hard_timeout + 1.5
    sim.pause_node(primary, pause)
    sim.cut_node(primary, pause, "from_peers")
    sent = []
    for k in range(8):
        sim.run_until(3.0 + 0.3 * k)
        sent.append(sim.client_write(p, primary))       # a client with a stale route
    sim.run_until(3.0 + pause - 0.01)
    assert sim.record(p).epoch > old.epoch and sim.record(p).primary != primary
    sim.run_until(3.0 + pause + 0.001)                              # just resumed
    stale = [v for e, v in sim.nodes[primary].parts[p].log if e == old.epoch and v in sent]
    assert stale == sent                                            # appended under the old epoch
    sim.run_until(3.0 + pause + 1.0)
    assert sim.stale_from.get((primary, p, old.epoch), 0) >= 1      # refused by epoch
    assert sim.nodes[primary].parts[p].leading == 0                 # stepped down
    sim.finish()
    acked = {value for _, value in sim.acked[p]}
    assert not acked & set(sent)
    log = sim.nodes[primary].parts[p].log
    assert not {value for _, value in log} & set(sent)              # truncated away


def test_primary_cut_off_from_the_controller_keeps_writing_but_nothing_is_acknowledged():
    cfg = QUIET
    sim = Sim(4, cfg)
    sim.run_until(3.0)
    p = 2
    old = sim.record(p)
    primary = old.primary
    sim.cut_node(primary, cfg.hard_timeout + 2.0, "ctl")      # it still reaches its backups
    sent = []
    for k in range(12):
        sim.run_until(3.0 + 0.25 * k)
        sent.append(sim.client_write(p, primary))
    sim.run_until(3.0 + cfg.hard_timeout + 2.5)
    assert sim.record(p).epoch > old.epoch and sim.record(p).primary != primary
    sim.finish()
    late = [v for v, t in sim.submitted.items() if v in sent and t > sim.events_of("failover", p)[0].time]
    acked = {value for _, value in sim.acked[p]}
    assert late and not acked & set(late)


@pytest.mark.parametrize("after", [False, True], ids=["before-the-write", "after-the-write"])
def test_controller_restart_during_a_failover(after):
    """The controller dies at its write of the failover (just before it, or just after
    it took effect); the new one waits out the lease, then finishes the job once."""
    cfg = QUIET
    sim = Sim(5, cfg)
    sim.run_until(3.0)
    p = 3
    old = sim.record(p)
    primary = old.primary
    sim.arm_controller_crash(0.3, after=after, partition=p, epoch_change=True)
    sim.crash_node(primary, 8.0)                        # stays down until long after
    sim.run_until(4.5)
    assert sim.ctl is not None and not sim.ctl.status(sim.now).active     # the successor stands by
    assert (sim.record(p).epoch > old.epoch) == after
    sim.run_until(10.0)
    new = sim.record(p)
    assert new.primary not in (None, primary) and new.epoch == old.epoch + 1     # failed over once
    assert [e.kind for e in sim.events if e.kind == "controller_active"]
    sim.finish()


def test_controller_pause_does_not_convict_anyone():
    """Paused 3 s (past pause_limit, and past its lease, which nobody else takes): the
    silence was the controller's, not the nodes'."""
    sim = Sim(6, QUIET)
    sim.run_until(3.0)
    epochs = [sim.record(p).epoch for p in sim.partitions]
    sim.pause_controller(3.0)
    sim.run_until(8.0)
    assert sim.events_of("controller_paused")
    assert not sim.events_of("node_down") and not sim.events_of("failover")
    assert [sim.record(p).epoch for p in sim.partitions] == epochs
    sim.finish()


def test_silent_restart_works_around_bug_a():
    """Until A is fixed, a data path can avoid it: a restarted node named primary of an
    epoch it cannot vouch for stops heartbeating until the controller has replaced it."""
    cfg = replace(QUIET, restart_policy="silent")
    sim = Sim(11, cfg)
    sim.run_until(3.0)
    primary = sim.record(0).primary
    sim.crash_node(primary, 2.0)
    sim.run_until(3.1)
    sim.pause_controller(2.5)
    sim.finish()
    assert sim.record(0).primary != primary or sim.record(0).epoch > 2


# --- the checker has teeth --------------------------------------------------------------------------

BASELINE = SimConfig(mode="nocrash", controller_faults=False, fail_back=False)


@pytest.mark.parametrize("mutation", ["commit_without_acks", "no_fencing"])
def test_a_broken_data_path_is_caught(mutation):
    """Overlapping pauses and cuts without controller faults or fail-back (where none of
    the known bugs fires: test_baseline_is_clean): breaking the data path on purpose must
    trip a safety invariant within a few seeds."""
    cfg = replace(BASELINE, mutation=mutation)
    for seed in range(10):
        try:
            Sim(seed, cfg).run()
        except Violation as exc:
            assert exc.kind == "safety"
            return
    pytest.fail(f"no violation in 10 seeds with the data path broken ({mutation})")


@pytest.mark.parametrize("seed", range(3))
def test_baseline_is_clean(seed):
    Sim(seed, BASELINE).run()


# --- the controller bugs found, as minimal reproductions (xfail until fixed) -------------------------------

def expect_code(code, run):
    """Run ``run()``; a Violation with ``code`` is the bug (re-raised as such for xfail),
    any other Violation is a different failure and fails the test."""
    try:
        run()
    except Violation as exc:
        if exc.code != code:
            raise AssertionError(f"expected {code}, got another violation:\n{exc}") from None
        raise


@pytest.mark.parametrize("incarnations", [True, False], ids=["incarnation", "config only"])
def test_bug_a_primary_restarted_during_a_controller_pause_is_replaced(incarnations):
    """The primary crashes; the controller is paused (GC, SIGSTOP) before it convicts it;
    the primary restarts without its log during the pause. It refuses to lead an epoch
    whose entries it lost, but it heartbeats, so the controller keeps it as primary.
    Fixed twice over: by its new incarnation, and (without one) by its never reporting
    the record that made it primary."""
    sim = Sim(11, replace(QUIET, incarnations=incarnations))
    sim.run_until(3.0)
    p = 0
    primary = sim.record(p).primary
    sim.crash_node(primary, 2.0)
    sim.run_until(3.1)
    sim.pause_controller(2.5)
    expect_code("restarted-primary-not-replaced", sim.finish)


@pytest.mark.parametrize("incarnations", [True, False], ids=["incarnation", "config only"])
def test_bug_a_primary_restarted_while_a_new_controller_stands_by_is_replaced(incarnations):
    """The controller convicts the dead primary and dies just before writing its
    failover; the new controller gives every node a fresh hard_timeout of grace, and the
    primary restarts (without its log) within it: never replaced."""
    sim = Sim(12, replace(QUIET, incarnations=incarnations))
    sim.run_until(3.0)
    p = 0
    primary = sim.record(p).primary
    sim.arm_controller_crash(0.3, after=False, partition=p, epoch_change=True)
    sim.crash_node(primary, 1.8)
    sim.run_until(6.0)                  # (finish() would disarm the controller's crash)
    assert sim.events_of("controller_active")[-1].time > 5.0     # the new controller took over
    expect_code("restarted-primary-not-replaced", sim.finish)


def test_bug_b_controller_restart_keeps_healthy_backups_in_sync():
    """A controller that takes over with no report history measures every backup's lag
    from the record's last change: its first ticks drop healthy backups from every
    in-sync set (writes stall below min_in_sync; re-added backups are unconfirmed)."""
    sim = Sim(13, QUIET)
    sim.run_until(3.0)
    sim.crash_controller(QUIET.hard_timeout + 0.5)       # the lease has expired: active at once
    sim.run_until(3.0 + QUIET.hard_timeout + 2.0)
    shrinks = [e for e in sim.events_of("isr_shrink") if "max_lag" in e.reason]
    assert not shrinks, f"{len(shrinks)} healthy backups dropped, e.g. {shrinks[0]}"


def test_bug_b_primary_report_gap_keeps_healthy_backups_in_sync():
    """The primary's heartbeats are lost for 1.4 s (it keeps replicating; a controller
    pause just before has widened the detector's spread, so it is not convicted): when
    they resume, its backups look 1.4 s behind and are dropped from the in-sync set."""
    sim = Sim(14, QUIET)
    sim.run_until(3.0)
    sim.pause_controller(2.0)
    sim.run_until(6.0)
    p = 0
    primary = sim.record(p).primary
    sim.cut_node(primary, 1.4, "to_ctl")
    sim.run_until(9.0)
    assert not sim.events_of("node_down")
    shrinks = [e for e in sim.events_of("isr_shrink", p) if "max_lag" in e.reason]
    assert not shrinks, f"{len(shrinks)} healthy backups of p{p} dropped, e.g. {shrinks[0]}"


def test_bug_e_a_primary_that_cannot_replicate_does_not_evict_its_backups():
    """The primary's messages to its backups are lost for 1.8 s (it still heartbeats):
    commits stop, its tail runs ahead, and the lag rule drops both backups, leaving it
    alone in the in-sync set (below min_in_sync, where the drop buys nothing). It then
    crashes: p is unavailable for good, though both backups hold every acknowledged write."""
    sim = Sim(17, QUIET)
    sim.run_until(3.0)
    p = 0
    primary = sim.record(p).primary
    sim.cut_node(primary, 1.8, "to_peers")
    sim.run_until(4.85)                 # (the bug: in_sync is now {primary})
    sim.crash_node(primary, 4.0)
    expect_code("unavailable-with-data-elsewhere", sim.finish)


def test_bug_c_new_controller_does_not_promote_an_emptied_replica():
    """p's backups are paused past the timeout (they leave its in-sync set; they keep
    every acknowledged write); the primary crashes just after they resume, so p is
    unavailable with in_sync = {primary}; the primary restarts empty and is rightly
    refused (it reports less than the last commit). Then the controller restarts: the
    new one does not know the commit and promotes the empty node."""
    cfg = QUIET
    sim = Sim(15, cfg)
    sim.run_until(3.0)
    p = 0
    primary, *backups = sim.replicas[p]
    for b in backups:
        sim.pause_node(b, cfg.hard_timeout + 1.0)
    sim.run_until(3.0 + cfg.hard_timeout + 1.05)
    assert sim.record(p).in_sync == {primary}
    sim.crash_node(primary, 3.0)
    sim.run_until(sim.now + 4.0)
    assert sim.record(p).primary is None and sim.record(p).in_sync <= {primary}   # unavailable
    sim.run_until(sim.now + 2.0)
    assert sim.record(p).primary is None                   # the empty node is refused...
    sim.crash_controller(cfg.hard_timeout + 0.5)           # ... until the controller restarts
    expect_code("failover-lacks-acks", lambda: sim.run_until(sim.now + cfg.hard_timeout + 3.0))


def test_bug_d_fail_back_waits_for_the_preferred_replica_to_hold_the_commit():
    """The preferred primary restarts and catches up over a slow link (0.4 s): it is
    re-added while 0.4 s behind (within max_lag / 2), the primary confirms it, and the
    controller fails back at once, to a replica that lacks the last commits."""
    cfg = QUIET
    sim = Sim(16, cfg)
    sim.run_until(3.0)
    p = 0
    preferred = sim.replicas[p][0]
    assert sim.record(p).primary == preferred
    sim.crash_node(preferred, cfg.hard_timeout + 1.0)
    sim.run_until(3.0 + cfg.hard_timeout + 1.0)
    sim.slow_node(preferred, 0.4, 5.0)
    expect_code("fail_back-lacks-acks", lambda: sim.run_until(sim.now + 5.0))
