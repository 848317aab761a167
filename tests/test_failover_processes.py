"""Failover across real processes over the shared-memory log (the machinery of
``python -m hashring failover-demo``): SIGKILL of the primary and of a backup, the
killed node's return and fail-back; no acknowledged entry may be lost.

Each run forks three node processes (a primary and two backups of one partition) and runs
the FailoverController in this process with its default thresholds (heartbeats every
100 ms). Every step of a run is bounded (``timeout``), so a failure ends the test rather
than hanging it, and every test checks that its shared-memory segment is gone.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import pytest

from hashring import _failover_demo as demo
from hashring.log import PREFIX, SHM_DIR

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir(SHM_DIR),
                                reason="needs Linux shared memory (/dev/shm) and fork")

RUN_BUDGET = 20.0           # seconds one run may take, whatever happens


def ours() -> list[str]:
    """This process's demo segments still in shared memory."""
    mine = f"{PREFIX}failover-demo-{os.getpid()}-"
    return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(mine))


def run(**kwargs) -> demo.RunResult:
    t0 = time.monotonic()
    res = demo.run_once(after=0.2, timeout=8.0, **kwargs)
    elapsed = time.monotonic() - t0
    print(dataclasses.replace(res, timeline=[]))     # shown by pytest when the test fails
    for t, text in res.timeline:
        print(f"  {t:+8.3f}  {text}")
    assert not os.path.exists(demo.segment_path(res.segment)), f"segment {res.segment} left behind"
    assert not res.errors, "\n".join(res.errors)
    assert elapsed < RUN_BUDGET, f"the run took {elapsed:.1f} s"
    return res


@pytest.fixture(autouse=True)
def no_leftover_segments():
    yield
    left = ours()
    for entry in left:                  # a failed test must not leak segments either
        try:
            os.unlink(os.path.join(SHM_DIR, entry))
        except FileNotFoundError:
            pass
    assert not left, f"segments left in {SHM_DIR}: {left}"


def test_sigkill_primary_promotes_a_backup_without_losing_acknowledged_entries():
    res = run(kill="primary")
    backups = {n for n in demo.NODES if n != res.old_primary}
    assert res.victim == res.old_primary
    assert res.new_primary in backups
    assert res.epoch == 2
    assert res.victim_state == "down"
    # Detection by φ (about 0.6 s after the last heartbeat), well before the hard timeout.
    assert res.detect_s is not None and 0.3 < res.detect_s < 3.0
    assert res.failover_s is not None and res.detect_s <= res.failover_s <= res.write_s < 4.0
    assert res.acked_at_kill > 0
    assert res.lost_at_kill == 0 and res.lost == 0
    assert res.acked > res.acked_at_kill            # the new primary commits
    assert res.final_primary == res.new_primary
    assert res.old_primary not in res.in_sync_after
    assert res.new_primary in res.in_sync_after and len(res.in_sync_after) == 2
    texts = [text for _, text in res.timeline]
    assert any(text.startswith(f"failover {res.old_primary} -> {res.new_primary}, epoch 2") for text in texts)
    assert any(text.startswith(f"first committed write on {res.new_primary}") for text in texts)


def test_sigkill_backup_the_primary_keeps_committing():
    res = run(kill="backup")
    assert res.victim != res.old_primary
    assert res.new_primary is None and res.epoch == 1
    assert res.final_primary == res.old_primary
    # The dead reader is reclaimed by the writer, so commits go on without it at once.
    assert res.write_s is not None and res.write_s < 1.0
    assert res.acked > res.acked_at_kill > 0
    assert res.lost_at_kill == 0 and res.lost == 0
    assert res.victim_state == "down"
    assert res.victim not in res.in_sync_after
    assert set(res.in_sync_after) == set(demo.NODES) - {res.victim}
    assert not any(text.startswith("failover") for _, text in res.timeline)


def test_killed_primary_rejoins_catches_up_and_fails_back():
    res = run(kill="primary", recover=True, hold_down=1.0)
    rec = res.recovery
    assert rec is not None and rec.node == res.victim
    assert res.lost_at_kill == 0 and res.lost == 0
    # Caught up from a snapshot of the new primary plus the log after it...
    assert rec.snapshot_seq >= res.acked_at_kill
    assert rec.synced_s is not None and rec.synced_s < 2.0
    # ...in sync again only once trusted (hold_down), then the preferred primary is back.
    assert rec.isr_expand_s is not None and rec.isr_expand_s >= 1.0 - 0.05
    assert rec.fail_back_s is not None and rec.fail_back_s >= rec.isr_expand_s
    assert rec.new_primary == res.victim == res.final_primary
    assert rec.epoch == 3
    assert rec.handover_s is not None and rec.handover_s < 1.0
    assert set(res.final_in_sync) == set(demo.NODES)
    texts = [text for _, text in res.timeline]
    assert any(text.startswith(f"{res.new_primary} stopped writing") for text in texts)
    assert any(text.startswith(f"first committed write on {res.victim}: ") and "(epoch 3)" in text
               for text in texts)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kill"):
        demo.run_once(kill="writer")
    with pytest.raises(ValueError, match="heartbeat"):
        demo.run_once(heartbeat=0)
    with pytest.raises(ValueError, match="batch"):
        demo.run_once(batch=0)
    for argv in (["--runs", "0"], ["--heartbeat", "2"], ["--hold-down", "-1"], ["--seed", "-3"]):
        with pytest.raises(SystemExit) as exc:
            demo.main(argv)
        assert exc.value.code == 2


def test_paused_primary_is_fenced_then_rejoins_and_fails_back():
    # SIGSTOP: convicted and replaced while alive. The new primary may write only once the
    # old one has let go of the log (its writer lock), which it does when it resumes.
    res = run(kill="pause", hold_down=1.0)
    assert res.new_primary in set(demo.NODES) - {res.victim} and res.epoch == 2
    assert res.victim_state == "down"
    assert res.write_s >= res.failover_s + demo.PAUSE_AFTER_FAILOVER
    assert res.lost_at_kill == 0 and res.lost == 0
    texts = [text for _, text in res.timeline]
    stepped = texts.index(next(t for t in texts if t.startswith(f"{res.victim} stopped writing")))
    took_over = texts.index(next(t for t in texts if t.startswith(f"{res.new_primary} is the writer under epoch 2")))
    assert stepped < took_over
    rec = res.recovery
    assert rec is not None and not rec.restarted
    assert rec.fail_back_s is not None and rec.new_primary == res.victim == res.final_primary
    assert rec.epoch == 3
