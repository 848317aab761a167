"""Smoke benchmarks: hashring next to the simplest peers on the same inputs.

The full suite against every peer is issue 3; these keep the batch path honest meanwhile.
"""

import numpy as np
import pytest

from hashring import HashRing


def _numpy_ring(node_names, vnodes):
    xxhash = pytest.importorskip("xxhash")
    pts = np.array([xxhash.xxh3_64_intdigest(f"{n}-{j}".encode()) for n in node_names for j in range(vnodes)],
                   dtype=np.uint64)
    owners = np.repeat(np.arange(len(node_names), dtype=np.int32), vnodes)
    order = np.argsort(pts, kind="stable")
    return pts[order], owners[order], xxhash.xxh3_64_intdigest


def _numpy_lookup(pts, owners, hashes):
    idx = np.searchsorted(pts, hashes, side="left")
    idx[idx == len(pts)] = 0
    return owners[idx]


@pytest.mark.parametrize("peer", ["hashring", "xxhash+searchsorted", "uhashring-loop"])
def test_batch_map_str_list(benchmark, peer, node_names, str_keys):
    benchmark.group = "batch map: list of 100k str keys, 100 nodes"
    if peer == "hashring":
        ring = HashRing(node_names, vnodes=160)
        result = benchmark(ring.map, str_keys)
        names = [ring.nodes[i] for i in result]
    elif peer == "xxhash+searchsorted":
        pts, owners, h = _numpy_ring(node_names, 160)

        def run():
            hs = np.fromiter((h(k.encode()) for k in str_keys), dtype=np.uint64, count=len(str_keys))
            return _numpy_lookup(pts, owners, hs)
        result = benchmark(run)
        names = [node_names[i] for i in result]
    else:
        uhashring = pytest.importorskip("uhashring")
        ring = uhashring.HashRing(node_names, hash_fn="ketama")
        get = ring.get_node
        names = benchmark(lambda: [get(k) for k in str_keys])
    assert len(names) == len(str_keys) and set(names) <= set(node_names)


@pytest.mark.parametrize("peer", ["hashring", "np.searchsorted"])
def test_prehashed_uint64(benchmark, peer, node_names, hashes):
    benchmark.group = "pre-hashed uint64: 1M keys, 16,000 points"
    ring = HashRing(node_names, vnodes=160)
    if peer == "hashring":
        result = benchmark(ring.lookup_hashes, hashes)
    else:
        snap = ring.snapshot()
        result = benchmark(_numpy_lookup, snap.points, snap.owners, hashes)
    np.testing.assert_array_equal(result, ring.lookup_hashes(hashes))
