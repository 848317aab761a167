"""Promotion decisions, case by case (the pure core of the failover controller)."""

import pytest

from hashring import NodeState, PartitionState, Promotion, decide_promotions

UP, SUSPECT, DOWN = NodeState.UP, NodeState.SUSPECT, NodeState.DOWN


def part(primary="a", replicas=("a", "b", "c"), in_sync=("a", "b", "c"), epoch=4, partition=0):
    return PartitionState(partition, tuple(replicas), primary, frozenset(in_sync), epoch)


CASES = [
    # name, partition, node states, acknowledged positions, unclean, expected (new primary, clean) or None
    ("primary up: nothing to do", part(), dict(a=UP, b=UP, c=UP), {}, False, None),
    ("primary only suspect: not replaced", part(), dict(a=SUSPECT, b=UP, c=UP), {}, False, None),
    ("dead primary, in-sync backups: the most acknowledged wins",
     part(), dict(a=DOWN, b=UP, c=UP), {("b", 0): 90, ("c", 0): 100}, False, ("c", True)),
    ("dead primary, equal positions: preference order breaks the tie",
     part(), dict(a=DOWN, b=UP, c=UP), {("b", 0): 100, ("c", 0): 100}, False, ("b", True)),
    ("unreported primary counts as down", part(), dict(b=UP, c=UP), {("c", 0): 5}, False, ("c", True)),
    ("an in-sync backup that is suspect is no candidate",
     part(), dict(a=DOWN, b=SUSPECT, c=UP), {("b", 0): 100, ("c", 0): 10}, False, ("c", True)),
    ("all backups lagging: unavailable", part(in_sync=("a",)), dict(a=DOWN, b=UP, c=UP),
     {("b", 0): 90, ("c", 0): 80}, False, (None, True)),
    ("all backups lagging, unclean allowed: the most up to date",
     part(in_sync=("a",)), dict(a=DOWN, b=UP, c=UP), {("b", 0): 90, ("c", 0): 80}, True, ("b", False)),
    ("every backup down: unavailable even with unclean",
     part(), dict(a=DOWN, b=DOWN, c=SUSPECT), {}, True, (None, True)),
    ("unavailable partition whose in-sync backup came back",
     part(primary=None, in_sync=("b",)), dict(a=DOWN, b=UP, c=UP), {("c", 0): 99}, False, ("b", True)),
    ("unavailable and still no candidate: no new decision",
     part(primary=None, in_sync=("a",)), dict(a=DOWN, b=UP, c=UP), {}, False, None),
    ("positions of other partitions do not count",
     part(partition=3), dict(a=DOWN, b=UP, c=UP), {("b", 0): 500, ("c", 3): 1}, False, ("c", True)),
]


@pytest.mark.parametrize("name, partition, states, positions, unclean, expected", CASES, ids=[c[0] for c in CASES])
def test_decisions(name, partition, states, positions, unclean, expected):
    decisions = decide_promotions([partition], states, positions, unclean=unclean)
    if expected is None:
        assert decisions == []
        return
    (decision,) = decisions
    assert isinstance(decision, Promotion)
    assert (decision.new_primary, decision.clean) == expected
    assert decision.partition == partition.partition and decision.old_primary == partition.primary
    assert decision.epoch == partition.epoch + 1            # every decision bumps the epoch
    assert decision.new_primary is None or decision.new_primary in partition.replicas


def test_many_partitions_are_decided_independently():
    parts = [part(partition=i, primary=p, replicas=r) for i, (p, r) in
             enumerate([("a", "abc"), ("b", "bca"), ("c", "cab")])]
    decisions = decide_promotions(parts, dict(a=DOWN, b=UP, c=UP), {})
    assert [(d.partition, d.new_primary) for d in decisions] == [(0, "b")]
