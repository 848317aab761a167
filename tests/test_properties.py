"""Property tests: the compiled ring equals the plain-Python reference ring (hashring._pyring)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hashring import HashRing, hash64_many
from hashring._pyring import PyRing

pytest.importorskip("xxhash")
pytest.importorskip("mmh3")

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
text_keys = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
keys = st.one_of(text_keys, st.binary(max_size=40), st.integers(-2**70, 2**70))
modes = st.sampled_from([
    dict(hash="xxh3"), dict(hash="md5"), dict(hash="murmur3"), dict(compat="ketama"), dict(compat="uhashring"),
])


def weights_for(mode):
    if "compat" in mode:
        return st.integers(1, 6)
    return st.one_of(st.integers(1, 4), st.floats(0.05, 3.0, allow_nan=False, allow_infinity=False))


def same_answers(ring, ref, sample):
    assert ring.nodes == ref.nodes
    if not len(ref.nodes):
        return
    expected = [ref.get_node(k) for k in sample]
    assert [ring.get_node(k) for k in sample] == expected
    assert [ring.nodes[i] for i in ring.map(sample)] == expected
    n = min(3, len(ref.nodes))
    for k in sample[:20]:
        try:
            want = ref.get_nodes(k, n)
        except ValueError:
            with pytest.raises(ValueError):
                ring.get_nodes(k, n)
            continue
        assert ring.get_nodes(k, n) == want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), mode=modes)
def test_static_rings_agree(data, mode):
    node_names = data.draw(st.lists(names, min_size=1, max_size=12, unique=True))
    w = data.draw(st.lists(weights_for(mode), min_size=len(node_names), max_size=len(node_names)))
    vnodes = data.draw(st.integers(1, 64) if "compat" in mode else st.integers(1, 300))
    nodes = dict(zip(node_names, w))
    ring = HashRing(nodes, vnodes=vnodes, **mode)
    ref = PyRing(nodes, vnodes=vnodes, **mode)
    pts = np.array([p for p, _ in ref.points()], dtype=np.uint64)
    if "compat" in mode:
        pts = pts << np.uint64(32)
    np.testing.assert_array_equal(ring.snapshot().points, pts)
    assert [ring.nodes[i] for i in ring.snapshot().owners] == [o for _, o in ref.points()]
    same_answers(ring, ref, data.draw(st.lists(keys, min_size=1, max_size=60)))


@settings(max_examples=40, deadline=None)
@given(h=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=200), seed=st.integers(0, 3))
def test_prehashed_equals_bisect(h, seed):
    ring = HashRing([f"n{i}" for i in range(seed + 2)], vnodes=7)
    ref = PyRing([f"n{i}" for i in range(seed + 2)], vnodes=7)
    pts = [p for p, _ in ref.points()]
    own = [o for _, o in ref.points()]
    import bisect
    want = [own[bisect.bisect_left(pts, x) % len(pts)] for x in h]
    assert [ring.nodes[i] for i in ring.lookup_hashes(np.array(h, dtype=np.uint64))] == want


class RingChanges(RuleBasedStateMachine):
    """Random add / remove / set_weight sequences keep compiled == reference."""

    @initialize(mode=modes, data=st.data())
    def start(self, mode, data):
        self.mode = mode
        self.vnodes = 24 if "compat" in mode else 96
        self.weight = weights_for(mode)
        initial = data.draw(st.lists(names, max_size=5, unique=True))
        self.ring = HashRing(initial, vnodes=self.vnodes, **mode)
        self.ref = PyRing(initial, vnodes=self.vnodes, **mode)

    @rule(name=names, data=st.data())
    def add(self, name, data):
        weight = data.draw(self.weight)
        if name in self.ref:
            with pytest.raises(ValueError):
                self.ring.add_node(name, weight)
            return
        self.ring.add_node(name, weight)
        self.ref.add_node(name, weight)

    @precondition(lambda self: len(self.ref) > 0)
    @rule(data=st.data())
    def remove(self, data):
        name = data.draw(st.sampled_from(self.ref.nodes))
        self.ring.remove_node(name)
        self.ref.remove_node(name)

    @precondition(lambda self: len(self.ref) > 0)
    @rule(data=st.data())
    def reweight(self, data):
        name = data.draw(st.sampled_from(self.ref.nodes))
        weight = data.draw(self.weight)
        self.ring.set_weight(name, weight)
        self.ref.set_weight(name, weight)

    @rule(name=names)
    def remove_unknown(self, name):
        assume(name not in self.ref)
        with pytest.raises(KeyError):
            self.ring.remove_node(name)

    @invariant()
    def agree(self):
        sample = [f"key{i}" for i in range(25)] + [b"\x00\xff", 7, -3, "ключ"]
        same_answers(self.ring, self.ref, sample)


RingChanges.TestCase.settings = settings(max_examples=40, stateful_step_count=12, deadline=None)
test_ring_changes = RingChanges.TestCase


@settings(max_examples=80, deadline=None)
@given(batch=st.lists(text_keys, min_size=1, max_size=50), mode=modes)
def test_every_door_agrees_with_get_node(batch, mode):
    """The same key gives the same node through every door, for any text."""
    pa = pytest.importorskip("pyarrow")
    ring = HashRing([f"n{i}" for i in range(9)], vnodes=32 if "compat" not in mode else 8, **mode)
    expected = [ring.nodes.index(ring.get_node(k)) for k in batch]
    doors = [batch, tuple(batch), np.array(batch, dtype=object), pa.array(batch), pa.array(batch, pa.large_string())]
    if all(not k.endswith("\0") for k in batch):
        doors.append(np.array(batch, dtype="U"))      # numpy 'U' strips trailing NULs
    for door in doors:
        assert list(ring.map(door)) == expected
    raw = [k.encode() for k in batch]
    if "compat" not in mode or mode["compat"] == "ketama":
        expected_raw = [ring.nodes.index(ring.get_node(b)) for b in raw]
        assert expected_raw == expected
        doors = [raw, pa.array(raw, pa.binary())]
        if all(not b.endswith(b"\0") for b in raw):
            doors.append(np.array(raw, dtype="S"))
        for door in doors:
            assert list(ring.map(door)) == expected
    if "compat" not in mode:
        assert list(ring.lookup_hashes(hash64_many(batch, mode["hash"]))) == expected
