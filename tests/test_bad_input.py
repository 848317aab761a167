"""Every kind of bad input: a clear exception naming the argument, and nothing changed."""

import math

import numpy as np
import pytest

from hashring import EmptyRingError, HashRing, MAX_POINTS


def state(ring):
    snap = ring.snapshot()
    return (snap.nodes, dict(snap.weights), snap.points.tobytes(), snap.owners.tobytes())


@pytest.mark.parametrize("nodes, exc, match", [
    (["a", "a"], ValueError, "duplicate node name 'a'"),
    (["a", 3], TypeError, "node names must be str"),
    ([b"a"], TypeError, "node names must be str"),
    ([""], ValueError, "non-empty"),
    (["\ud800"], ValueError, "not valid Unicode"),
    ({"a": 0}, ValueError, "weight of node 'a'"),
    ({"a": -1}, ValueError, "weight of node 'a'"),
    ({"a": math.nan}, ValueError, "weight of node 'a'"),
    ({"a": math.inf}, ValueError, "weight of node 'a'"),
    ({"a": "2"}, TypeError, "weight of node 'a'"),
    ({"a": None}, TypeError, "weight of node 'a'"),
    ({"a": True}, TypeError, "weight of node 'a'"),
    ("abc", TypeError, "nodes must be"),
    (42, TypeError, "nodes must be"),
])
def test_bad_nodes(nodes, exc, match):
    with pytest.raises(exc, match=match):
        HashRing(nodes)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(vnodes=0), ValueError, "vnodes"),
    (dict(vnodes=-5), ValueError, "vnodes"),
    (dict(vnodes=1.5), TypeError, "vnodes"),
    (dict(vnodes=True), TypeError, "vnodes"),
    (dict(vnodes=MAX_POINTS + 1), ValueError, "vnodes"),
    (dict(vnodes=MAX_POINTS // 2), ValueError, "vnodes=.*points, above the limit"),
    (dict(hash="sha1"), ValueError, "hash must be one of"),
    (dict(hash=None, compat="ketamax"), ValueError, "compat must be"),
    (dict(hash="xxh3", compat="ketama"), ValueError, "hash='xxh3' cannot be used with compat='ketama'"),
])
def test_bad_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        HashRing(["a", "b", "c"], **kwargs)


def test_compat_weights_must_be_int():
    with pytest.raises(TypeError, match="positive int in compat='ketama' mode"):
        HashRing({"a": 1.5}, compat="ketama")
    with pytest.raises(TypeError, match="positive int in compat='uhashring' mode"):
        HashRing({"a": 1}, compat="uhashring").add_node("b", 0.5)


def test_failed_changes_change_nothing():
    ring = HashRing({"a": 1, "b": 2})
    before = state(ring)
    bad_calls = [
        (lambda: ring.add_node("a"), ValueError, "already in the ring"),
        (lambda: ring.add_node(5), TypeError, "node names must be str"),
        (lambda: ring.add_node("c", 0), ValueError, "weight of node 'c'"),
        (lambda: ring.add_node("c", float("nan")), ValueError, "weight of node 'c'"),
        (lambda: ring.add_node("c", MAX_POINTS), ValueError, "above the limit"),
        (lambda: ring.remove_node("zz"), KeyError, "'zz' is not in the ring"),
        (lambda: ring.set_weight("zz", 2), KeyError, "'zz' is not in the ring"),
        (lambda: ring.set_weight("a", -1), ValueError, "weight of node 'a'"),
        (lambda: ring.set_weight("a", "x"), TypeError, "weight of node 'a'"),
    ]
    for call, exc, match in bad_calls:
        with pytest.raises(exc, match=match):
            call()
        assert state(ring) == before


@pytest.mark.parametrize("compat", [None, "uhashring"])
def test_bad_keys(compat):
    ring = HashRing(["a", "b", "c"], compat=compat)
    for key in (None, 1.5, [1, 2], {"a": 1}, object(), True):
        with pytest.raises(TypeError, match="key must be"):
            ring.get_node(key)
        with pytest.raises(TypeError, match="key must be"):
            ring.get_nodes(key, 2)
        with pytest.raises(TypeError, match=r"keys\[1\]: key must be"):
            ring.map(["ok", key, "ok"])
    with pytest.raises(ValueError, match="not valid Unicode"):
        ring.get_node("bad\udc80")
    with pytest.raises(ValueError, match=r"keys\[2\].*not valid Unicode"):
        ring.map(["x", "y", "bad\udc80"])


def test_bad_batches():
    ring = HashRing(["a", "b", "c"])
    for keys, exc, match in [
        ("abc", TypeError, "not a single str"),
        (b"abc", TypeError, "not a single bytes"),
        ({"a": 1}, TypeError, "not a mapping"),
        (5, TypeError, "iterable of keys"),
        (np.zeros(3, np.float64), TypeError, "unsupported array dtype float64"),
        (np.zeros(3, bool), TypeError, "unsupported array dtype bool"),
        (np.array(["a", "b"]).reshape(1, 2), ValueError, "1-dimensional"),
    ]:
        with pytest.raises(exc, match=match):
            ring.map(keys)
    pa = pytest.importorskip("pyarrow")
    with pytest.raises(TypeError, match=r"keys\[1\]: key must not be None"):
        ring.map(pa.array(["a", None, "c"]))
    with pytest.raises(TypeError, match="unsupported Arrow type"):
        ring.map(pa.array([1.5, 2.5]))
    bad_u = np.array([0xD800], dtype=np.uint32).view("U1")
    with pytest.raises(ValueError, match=r"keys\[0\].*not valid Unicode"):
        ring.map(bad_u)


def test_non_contiguous_arrays_are_copied():
    ring = HashRing(["a", "b", "c"])
    keys = np.array([f"k{i}" for i in range(100)])
    np.testing.assert_array_equal(ring.map(keys[::2]), ring.map(list(keys[::2])))
    b = keys.astype("S")
    np.testing.assert_array_equal(ring.map(b[::3]), ring.map(list(b[::3])))
    h = np.arange(200, dtype=np.uint64) * np.uint64(2**56)
    np.testing.assert_array_equal(ring.lookup_hashes(h[::2]), ring.lookup_hashes(h[::2].copy()))
    swapped = keys.astype(keys.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(ring.map(swapped), ring.map(keys))


def test_bad_hashes_and_n():
    ring = HashRing(["a", "b", "c"])
    with pytest.raises(TypeError, match="hashes must be a uint64 array"):
        ring.lookup_hashes(np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="hashes must be a uint64 array"):
        ring.lookup_hashes(np.array([-1, 2], np.int64))
    with pytest.raises(ValueError, match="1-dimensional"):
        ring.lookup_hashes(np.zeros((2, 2), np.uint64))
    assert list(ring.lookup_hashes([1, 2])) == list(ring.lookup_hashes(np.array([1, 2], np.uint64)))
    compat = HashRing(["a", "b"], compat="ketama")
    with pytest.raises(ValueError, match=r"hashes\[1\].*32-bit"):
        compat.lookup_hashes(np.array([5, 2**32], np.uint64))
    for n, exc, match in [(0, ValueError, "n must be >= 1"), (4, ValueError, "n=4 is larger than the 3 nodes"),
                          (1.0, TypeError, "n must be an int"), (True, TypeError, "n must be an int"),
                          ("2", TypeError, "n must be an int")]:
        with pytest.raises(exc, match=match):
            ring.get_nodes("k", n)
        with pytest.raises(exc, match=match):
            ring.map_nodes(["k"], n)


def test_compat_node_without_points():
    # A tiny weight gets zero md5 groups in the ketama modes: it is in the ring but owns nothing.
    ring = HashRing({"big": 1000, "tiny": 1}, compat="uhashring")
    assert "tiny" in ring and ring.shares()["tiny"] == 0
    assert ring.get_nodes("k", 1) == ["big"]
    with pytest.raises(ValueError, match="exceeds the 1 nodes that own points"):
        ring.get_nodes("k", 2)
    with pytest.raises(ValueError, match="exceeds the 1 nodes that own points"):
        ring.map_nodes(["k"], 2)


def test_empty_error_names_the_problem():
    with pytest.raises(EmptyRingError, match="the ring is empty"):
        HashRing().get_node("x")


def test_arrow_offsets_are_checked_before_reading():
    pa = pytest.importorskip("pyarrow")
    ring = HashRing(["a", "b"])
    for offsets in ([0, 100000, 3], [0, 3, 1]):
        buf = pa.py_buffer(np.array(offsets, np.int32).tobytes())
        arr = pa.Array.from_buffers(pa.binary(), 2, [None, buf, pa.py_buffer(b"abc")])
        with pytest.raises(ValueError, match="invalid Arrow offsets"):
            ring.map(arr)
    with pytest.raises(TypeError, match=r"keys\[3\]: key must not be None"):
        ring.map(pa.chunked_array([["x", "y", "z"], [None]]))


@pytest.mark.parametrize("n_nodes", [3, 200])
def test_snapshot_arrays_cannot_change_the_ring(n_nodes):
    # 3 nodes: the arrays are read-only views of the table; 200 nodes (a packed table):
    # read-only copies, which may be made writable but are the ring's no longer.
    ring = HashRing([f"n{i}" for i in range(n_nodes)])
    snap = ring.snapshot()
    keys = [f"k{i}" for i in range(1000)]
    before = ring.map(keys)
    for arr in (snap.points, snap.owners):
        with pytest.raises(ValueError):
            arr[0] = 0
        try:
            arr.flags.writeable = True
        except ValueError:
            assert not snap._table.packed
            continue
        assert snap._table.packed
        arr[:] = 0
    np.testing.assert_array_equal(ring.map(keys), before)
    assert snap.points[-1] != 0


def test_private_table_guards():
    from hashring._ring import RingTable

    snap = HashRing([f"n{i}" for i in range(100)], vnodes=2).snapshot()
    with pytest.raises(ValueError, match="n must be >= 1"):
        snap._table.get_nodes("k", 0)
    with pytest.raises(ValueError, match="owner index"):
        RingTable(np.array([1, 2], np.uint64), np.array([0, 5], np.int32), ("a",), 0)
    with pytest.raises(ValueError, match="rank"):
        RingTable(np.array([1, 2], np.uint64), np.array([0, 0], np.int32), ("a",), 0, rank=[0, 1])
    # The table sorts what it is given (value, then owner rank, then input order) ...
    table = RingTable(np.array([5, 2, 5, 9], np.uint64), np.array([0, 1, 1, 0], np.int32), ("a", "b"), 0,
                      rank=[1, 0])
    assert table.points.tolist() == [2, 5, 5, 9] and table.owners.tolist() == [1, 1, 0, 0]
    # ... and once built it cannot be changed, not even by calling __init__ again.
    with pytest.raises(TypeError, match="immutable"):
        table.__init__(np.array([1], np.uint64), np.array([0], np.int32), ("a",), 0)


def test_huge_weights_name_the_node():
    for weight in (10**400, 1e306, MAX_POINTS + 1):
        with pytest.raises(ValueError, match="weight of node 'a'"):
            HashRing({"a": weight})
    with pytest.raises(ValueError, match="weight of node 'a'"):
        HashRing({"a": 10**39, "b": 1}, compat="ketama")
    ring = HashRing(["x"])
    with pytest.raises(ValueError, match="weight of node 'b'"):
        ring.add_node("b", 1e306)
    assert ring.nodes == ("x",)


def test_unhashable_arguments_are_named():
    ring = HashRing(["a"])
    with pytest.raises(KeyError, match=r"node \['a'\] is not in the ring"):
        ring.remove_node(["a"])
    with pytest.raises(KeyError, match=r"node \['a'\] is not in the ring"):
        ring.set_weight(["a"], 1)
    assert (["a"] in ring) is False
    with pytest.raises(ValueError, match="compat must be"):
        HashRing(compat=[])


def test_prehashed_python_ints():
    import hashring

    ring = HashRing(["a", "b", "c"])
    hs = [hashring.hash64(f"k{i}") for i in range(50)]
    assert any(h >= 2**63 for h in hs)
    assert list(ring.lookup_hashes(hs)) == list(ring.map([f"k{i}" for i in range(50)]))
    assert ring.lookup_hashes([]).shape == (0,)
    with pytest.raises(TypeError, match="hashes must be"):
        ring.lookup_hashes([1.5])
    with pytest.raises(ValueError, match=r"hashes must be in \[0, 2\*\*64\)"):
        ring.lookup_hashes([-1])
    with pytest.raises(ValueError, match=r"hashes must be in \[0, 2\*\*64\)"):
        ring.lookup_hashes([2**64])


def test_a_key_that_empties_its_own_list_is_refused():
    keys = []

    class Shrinking:
        def __index__(self):
            keys.clear()
            return 5

    keys.extend([Shrinking()] + [f"k{i}" for i in range(4000)])
    with pytest.raises(RuntimeError, match="changed size"):
        HashRing(["a", "b", "c"]).map(keys)

    class LoudStr(str):
        def __str__(self):
            keys[:] = []
            return "x"

    keys[:] = [LoudStr("a")] + [f"k{i}" for i in range(4000)]
    with pytest.raises(RuntimeError, match="changed size"):
        HashRing(["a", "b", "c"], compat="uhashring").map(keys)


def test_lookups_on_uninitialised_objects_raise():
    from hashring import RingSnapshot

    for obj in (HashRing.__new__(HashRing), RingSnapshot.__new__(RingSnapshot)):
        with pytest.raises(TypeError, match="not initialised"):
            obj.get_node("x")
        with pytest.raises(TypeError, match="not initialised"):
            obj.get_nodes("x", 1)


def test_private_get_nodes_with_a_huge_n():
    table = HashRing([f"n{i}" for i in range(10)]).snapshot()._table
    with pytest.raises(ValueError, match="exceeds the 10 nodes"):
        table.get_nodes("x", 2**62)
