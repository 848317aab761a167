"""Issue 3's ring benchmarks: hashring next to its Python peers, one test per scenario.

The rows of a scenario share a group, so peers sit side by side in the report. Every row
runs on the same pre-built inputs (conftest.py) and is checked outside the timed part:
valid node names, the right count, and the same answers as hashring's where both
implement the same mapping. ``extra_info["items"]`` is the keys (or operations) of one
round; report.py divides by it. Rows that are not timings (memory, balance) record
their measure in ``extra_info`` and time one round only so that they land in the JSON.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import peers
from hashring import DEFAULT_VNODES, HashRing

M = 1_000_000
GET_NODE_KEYS = 100_000
SLOW_PEER_KEYS = 10_000         # rendezvous lookups and uhashring preference lists: 10-25 µs a key
POINTS_PER_NODE = 160           # build groups: the ring peers' default


def pytest_generate_tests(metafunc):
    quick = metafunc.config.getoption("quick")
    if "map_size" in metafunc.fixturenames:
        metafunc.parametrize("map_size", [M] if quick else [M, 10 * M], ids=keys_label)
    if "build_nodes" in metafunc.fixturenames:
        metafunc.parametrize("build_nodes", [100, 1000] if quick else [100, 1000, 10_000], ids=str)


def keys_label(n: int) -> str:
    return f"{n // M}M" if n % M == 0 else f"{n:,}"


def make_peer(label, request):
    return peers.make(label, lambda: request.getfixturevalue("ketama_worker"))


def record(benchmark, group, impl, items, **extra):
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, items=items, **extra)


def check_names(names, count, valid):
    assert len(names) == count
    outside = set(names) - set(valid)
    assert not outside, f"names outside the ring: {sorted(outside)[:5]}"


def check_same(names, reference, what):
    if names != reference:
        differ = sum(a != b for a, b in zip(names, reference))
        pytest.fail(f"{differ:,} of {len(reference):,} keys differ from {what}")


# --- 1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["hashring", "uhashring", "uhashring-ketama", "ketama", "jump", "clandestined"])
def test_1_get_node(benchmark, request, mode, inputs, node_names, label):
    """A per-key loop, ``for k in keys: get(k)`` with ``get`` bound locally (ketama: in its
    worker, one pipe round trip per round). 100k keys; clandestined 10k (O(N) a lookup)."""
    peer = make_peer(label, request)
    n_keys = SLOW_PEER_KEYS if label == "clandestined" else GET_NODE_KEYS
    keys = inputs.keys(n_keys)
    ring = peer.build(node_names)
    record(benchmark, "1 get_node, str key, 100 nodes", label, n_keys)
    benchmark.pedantic(peer.loop(ring), args=(keys,), rounds=mode.rounds(10, 3), warmup_rounds=1)
    check_names(peer.lookup_names(ring, keys[:1000]), 1000, node_names)


# --- 2 ---------------------------------------------------------------------------------

BATCH_PEERS = ["hashring", "xxh3+np.searchsorted"]
LOOP_PEERS = ["uhashring", "uhashring-ketama", "ketama", "jump"]
MAP_GROUPS = {
    "list": "2 map list of {} str keys",
    "numpy S": "2 map numpy S array, {} keys",
    "Arrow": "2 map Arrow string array, {} keys",
}


@pytest.mark.parametrize("form, label", [("list", p) for p in BATCH_PEERS + LOOP_PEERS]
                         + [("numpy S", p) for p in BATCH_PEERS] + [("Arrow", p) for p in BATCH_PEERS])
def test_2_map(benchmark, request, mode, inputs, node_names, form, label, map_size):
    """Owners of a batch of str keys, 100 nodes, each peer at its default vnodes.

    hashring: ``ring.map(keys)``. xxh3+np.searchsorted: xxh3 per key in Python into
    np.fromiter, then one searchsorted (S arrays: item by item; Arrow: ``to_pylist()``
    inside the timed part, as pyarrow has no per-element xxh3). Peers without a batch
    API: a list comprehension of their per-key lookup (ketama: in its worker), on the
    list only.
    """
    group = MAP_GROUPS[form].format(keys_label(map_size))
    if label in LOOP_PEERS and map_size > M:
        pytest.skip(f"per-key Python loop, 10+ s a round at {keys_label(map_size)}: "
                    f"see its row in {MAP_GROUPS['list'].format(keys_label(M))!r}")
    peer = make_peer(label, request)
    keys = {"list": inputs.keys, "numpy S": inputs.s_array, "Arrow": inputs.arrow}[form](map_size)
    ring = peer.build(node_names)
    record(benchmark, group, label, map_size)
    if label == "hashring":         # ~0.1 s a round: enough rounds for a steady median
        rounds, warmup = mode.rounds(11, 3), 1
    elif label in BATCH_PEERS:
        rounds, warmup = mode.rounds(5 if map_size <= M else 3, 3), 1
    else:
        rounds, warmup = mode.rounds(3, 1), 0
    result = benchmark.pedantic(peer.map(ring), args=(keys,), rounds=rounds, warmup_rounds=warmup)
    check_names(peer.names(ring, result), map_size, node_names)


@pytest.mark.parametrize("threads", [1, 2], ids=["1 thread", "2 threads"])
def test_2_map_threads(benchmark, mode, inputs, node_names, threads):
    """``ring.map(arr, threads=2)`` against one thread, on the numpy S array."""
    n_keys = mode.max_keys
    keys = inputs.s_array(n_keys)
    ring = HashRing(node_names)
    options = {} if threads == 1 else {"threads": threads}
    try:
        ring.map(keys[:10], **options)
    except TypeError as exc:
        pytest.skip(f"this hashring has no ring.map(keys, threads=N): {exc}")
    record(benchmark, f"2 map {keys_label(n_keys)} keys on 2 threads",
           "hashring 1 thread" if threads == 1 else f"hashring {threads} threads", n_keys)
    result = benchmark.pedantic(ring.map, args=(keys,), kwargs=options, rounds=mode.rounds(11, 3), warmup_rounds=1)
    np.testing.assert_array_equal(result, ring.map(keys))


# --- 3 ---------------------------------------------------------------------------------

# (nodes, vnodes): 16,000, 102,400 (hashring's default vnodes) and 1,000,000 points
PREHASHED_RINGS = [(100, 160), (100, None), (1000, 1000)]
_prehashed_rings = {}


def prehashed_ring(names, vnodes) -> HashRing:
    if (len(names), vnodes) not in _prehashed_rings:
        _prehashed_rings[len(names), vnodes] = HashRing(names, vnodes=vnodes)
    return _prehashed_rings[len(names), vnodes]


@pytest.mark.parametrize("n_nodes, vnodes", PREHASHED_RINGS, ids=["16k points", "102k points", "1M points"])
@pytest.mark.parametrize("label", ["hashring", "np.searchsorted", "jump"])
def test_3_prehashed(benchmark, mode, inputs, label, n_nodes, vnodes):
    """Keys already hashed with hashring.hash64 (uint64): the lookup alone.

    np.searchsorted runs on the ring's own snapshot (points, owners): side left, wrap to
    0, owner gather, so it must equal hashring's answer. jump gets the same hashes as a
    pre-built list of ints and n_nodes buckets (no ring points: its row is the same in
    every group). All rows see every key: 10M (1M in quick mode).
    """
    n_keys = mode.max_keys
    ring = prehashed_ring(inputs.nodes(n_nodes), vnodes)
    snap = ring.snapshot()
    record(benchmark, f"3 pre-hashed, {keys_label(n_keys)} keys, {len(snap.points):,} points", label, n_keys)
    # More rounds than elsewhere: these rounds are short and the medians carry targets.
    timing = dict(rounds=mode.rounds(11 if label != "jump" else 5, 3), warmup_rounds=1)
    if label == "hashring":
        hashes = inputs.hashes(n_keys)
        result = benchmark.pedantic(ring.lookup_hashes, args=(hashes,), **timing)
        assert result.dtype == np.int32 and len(result) == n_keys
        assert 0 <= result.min() and result.max() < n_nodes
    elif label == "np.searchsorted":
        hashes = inputs.hashes(n_keys)
        result = benchmark.pedantic(peers.searchsorted_owners, args=(snap.points, snap.owners, hashes), **timing)
        np.testing.assert_array_equal(result, ring.lookup_hashes(hashes))
    else:
        jump = peers.make("jump")
        hash_list = inputs.hash_list(n_keys)
        buckets = benchmark.pedantic(jump.map_hashes(list(range(n_nodes))), args=(hash_list,), **timing)
        assert len(buckets) == n_keys and 0 <= min(buckets) and max(buckets) < n_nodes


# --- 4 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["hashring get_nodes loop", "hashring map_nodes batch", "uhashring",
                                   "uhashring-ketama", "clandestined"])
def test_4_get_nodes(benchmark, request, mode, inputs, node_names, label):
    """Preference lists of 3 distinct nodes. hashring: ``get_nodes(k, 3)`` per key, or
    ``map_nodes(keys, 3)`` for the batch; uhashring: ``[c["nodename"] for c in
    ring.range(k, size=3)]``; clandestined: ``Cluster(replicas=3)`` over 3 zones, one node
    from each. 100k keys; uhashring and clandestined 10k (10-25 µs a key)."""
    peer = make_peer(label, request)
    n_keys = GET_NODE_KEYS if label.startswith("hashring") else SLOW_PEER_KEYS
    keys = inputs.keys(n_keys)
    ring = peer.build(node_names)
    record(benchmark, "4 get_nodes(key, 3), 100 nodes", label, n_keys)
    benchmark.pedantic(peer.preference_loop(ring, 3), args=(keys,), rounds=mode.rounds(10, 3), warmup_rounds=1)
    lists = peer.preference(ring, 3, keys[:1000])
    assert len(lists) == 1000
    for names in lists:
        assert len(set(names)) == 3 and set(names) <= set(node_names), names
    if label == "hashring map_nodes batch":
        check_same(lists, peers.Hashring().preference(ring, 3, keys[:1000]), "get_nodes(k, 3)")


# --- 5 ---------------------------------------------------------------------------------

# Rows whose builds at 1,000+ nodes take 0.15-2 s: fewer rounds there.
SLOW_BUILDERS = {"uhashring", "uhashring-ketama", "xxh3+np.searchsorted"}


def build_vnodes(label):
    """vnodes for a build or add row: 160 for "hashring" (as its peers), else the default."""
    return POINTS_PER_NODE if label == "hashring" else None


@pytest.mark.parametrize("label", ["hashring", "hashring default vnodes", "uhashring", "uhashring-ketama",
                                   "ketama", "xxh3+np.searchsorted", "clandestined"])
def test_5_build(benchmark, request, mode, inputs, label, build_nodes):
    """A ring from a list of node names. Every ring peer has 160 points per node here
    (hashring: ``vnodes=160``); "hashring default vnodes" has 1024; clandestined keeps
    only the node list; ketama writes its config file untimed and builds in its worker."""
    if label == "uhashring-ketama" and build_nodes >= 10_000:
        pytest.skip("uhashring ketama mode inserts each point with insort, O(P^2): minutes at 1.6M points")
    if label == "ketama":
        peers.Ketama.check_size(build_nodes)
    peer = make_peer(label, request)
    names = inputs.nodes(build_nodes)
    record(benchmark, f"5 build, {build_nodes:,} nodes x {POINTS_PER_NODE} points", label, 1)
    slow = build_nodes >= 10_000 or (label in SLOW_BUILDERS and build_nodes >= 1000)
    target, setup = peer.build_rounds(names, build_vnodes(label))
    ring = benchmark.pedantic(target, setup=setup, rounds=mode.rounds(3, 1) if slow else mode.rounds(10, 5),
                              warmup_rounds=0 if slow else 1)
    per_node = {"hashring default vnodes": DEFAULT_VNODES[None], "clandestined": 1}.get(label, POINTS_PER_NODE)
    assert peer.n_points(ring) == build_nodes * per_node
    if label != "ketama":
        check_names(peer.lookup_names(ring, inputs.keys(1000)), 1000, names)


@pytest.mark.parametrize("label", ["hashring", "hashring default vnodes", "uhashring", "uhashring-ketama",
                                   "xxh3+np.searchsorted", "clandestined"])
def test_5_add_node(benchmark, mode, inputs, label):
    """``add_node`` on a 1,000-node ring (160 points per node, as in the build groups);
    every round starts from a fresh copy made untimed by pedantic's setup. The numpy
    baseline hashes the new node's points and re-sorts all of them."""
    peer = peers.make(label)
    base = peer.build(inputs.nodes(1000), build_vnodes(label))
    record(benchmark, "5 add one node to a 1,000-node ring", label, 1)
    slow = label == "uhashring-ketama"         # a full O(P^2) rebuild: ~1.7 s
    ring = benchmark.pedantic(peer.add_node, setup=lambda: ((peer.fresh(base), "node1001"), {}),
                              rounds=mode.rounds(3, 1) if slow else mode.rounds(10, 5), warmup_rounds=0 if slow else 1)
    assert peer.n_points(ring) > peer.n_points(base)


# --- 6 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["hashring", "uhashring", "uhashring-ketama", "ketama", "xxh3+np.searchsorted"])
def test_6_memory(benchmark, request, node_names, label):
    """Bytes per ring point of a 100-node ring at each peer's defaults, recorded in
    ``extra_info["bytes_per_point"]`` (how: ``extra_info["method"]``). Not a timing: the
    one timed round is the measurement itself. jump and clandestined keep no points."""
    peer = make_peer(label, request)
    record(benchmark, "6 memory per ring point", label, 1)
    bytes_per_point, method = benchmark.pedantic(peer.bytes_per_point, args=(node_names,), rounds=1)
    assert bytes_per_point > 0
    benchmark.extra_info.update(bytes_per_point=round(bytes_per_point, 2), method=method)


# --- 7 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_nodes", [10, 100, 1000])
@pytest.mark.parametrize("label", ["hashring", "uhashring", "uhashring-ketama", "ketama", "jump", "clandestined",
                                   "xxh3+np.searchsorted"])
def test_7_balance(benchmark, request, inputs, label, n_nodes):
    """Peak/mean keys per node over the first 1M keys, each peer at its defaults, in
    ``extra_info["peak_mean"]`` (hashring through ``map``, per-key loops for peers with no
    batch API). Not a timing: one round. clandestined: 100k keys (O(N) a lookup)."""
    if label == "clandestined" and n_nodes >= 1000:
        pytest.skip("clandestined is O(N) a lookup: ~20 s for 100k keys at 1,000 nodes")
    if label == "ketama":
        peers.Ketama.check_size(n_nodes)
    peer = make_peer(label, request)
    n_keys = 100_000 if label == "clandestined" else M
    names = inputs.nodes(n_nodes)
    ring = peer.build(names)
    record(benchmark, f"7 balance, 1M keys, {n_nodes:,} nodes", label, n_keys, keys=n_keys, nodes=n_nodes)
    result = benchmark.pedantic(peer.map(ring), args=(inputs.keys(n_keys),), rounds=1)
    owners = peer.names(ring, result)
    check_names(owners, n_keys, names)
    peak = max(Counter(owners).values())
    benchmark.extra_info["peak_mean"] = round(peak / (n_keys / n_nodes), 4)


# --- 8 ---------------------------------------------------------------------------------

# Rows that must give the same names as a hashring compat ring (libketama's "first point
# >= hash" for ketama and the md5 baseline; uhashring's own rules for uhashring-ketama).
SAME_MAPPING = {
    "ketama": "hashring compat=ketama",
    "md5+np.searchsorted": "hashring compat=ketama",
    "uhashring-ketama": "hashring compat=uhashring",
}


@pytest.mark.parametrize("label", ["hashring compat=ketama", "hashring compat=uhashring", "uhashring-ketama",
                                   "ketama", "md5+np.searchsorted"])
def test_8_ketama_compatible(benchmark, request, mode, inputs, node_names, label):
    """libketama's ring (md5, 40 x 4 points per node) for 1M str keys. hashring: ``map``
    of a compat ring; uhashring hash_fn="ketama" and ketama (in its worker): list
    comprehensions of their per-key lookups; md5+np.searchsorted: md5 per key in Python
    into np.fromiter, then one searchsorted."""
    peer = make_peer(label, request)
    keys = inputs.keys(M)
    ring = peer.build(node_names)
    record(benchmark, "8 ketama-compatible map, 1M str keys, 100 nodes", label, M)
    batch = label.startswith("hashring")
    result = benchmark.pedantic(peer.map(ring), args=(keys,), rounds=mode.rounds(5, 3) if batch else mode.rounds(3, 1),
                                warmup_rounds=1 if batch else 0)
    names = peer.names(ring, result)
    check_names(names, M, node_names)
    if label in SAME_MAPPING:
        reference = make_peer(SAME_MAPPING[label], request)
        reference_ring = reference.build(node_names)
        check_same(names, reference.names(reference_ring, reference_ring.map(keys)), SAME_MAPPING[label])
