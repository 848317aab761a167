"""Issue 5's routing benchmark: ``FailoverController.route_many`` next to ``ring.map``.

Both rows map the same 1M str keys (and the same numpy S array) on the same 100-node
ring; route_many also reads each key's partition, primary and epoch. The target is
route_many within 2x of ring.map.
"""

from __future__ import annotations

import numpy as np
import pytest

from hashring import FailoverController, HashRing

M = 1_000_000
GROUPS = {"list": "9 failover routes, list of 1M str keys, 100 nodes",
          "numpy S": "9 failover routes, numpy S array, 1M keys, 100 nodes"}


@pytest.fixture(scope="module")
def routed(node_names):
    ring = HashRing(node_names)
    return ring, FailoverController(ring, 3, 2, partitions=256)


@pytest.mark.parametrize("form", ["list", "numpy S"])
@pytest.mark.parametrize("label", ["hashring ring.map", "hashring route_many"])
def test_9_route_many(benchmark, mode, inputs, routed, form, label):
    """``ring.map(keys)`` against ``ctl.route_many(keys)`` (256 partitions, rf 3)."""
    ring, ctl = routed
    keys = inputs.keys(M) if form == "list" else inputs.s_array(M)
    fn = ring.map if label == "hashring ring.map" else ctl.route_many
    benchmark.group = GROUPS[form]
    benchmark.extra_info.update(impl=label, items=M)
    result = benchmark.pedantic(fn, args=(keys,), rounds=mode.rounds(11, 3), warmup_rounds=1)
    if label == "hashring route_many":
        sample = range(0, M, 9973)
        assert [int(result.partition[i]) for i in sample] == [ctl.partition_of(inputs.keys(M)[i]) for i in sample]
        assert (result.primary >= 0).all() and (result.epoch == 1).all()
    else:
        assert len(result) == M
