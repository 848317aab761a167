"""The compiled ring: doors, preference lists, changes, protocols."""

import copy
import pickle
import random

import numpy as np
import pytest

import hashring
from hashring import EmptyRingError, HashRing

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

MODES = [
    dict(),
    dict(hash="md5"),
    dict(hash="murmur3"),
    dict(compat="ketama"),
    dict(compat="uhashring"),
]
MODE_IDS = ["xxh3", "md5", "murmur3", "ketama", "uhashring"]


def random_text_keys(n, seed=0):
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789:_-"
    wide = "éßжкл中文🙂"
    keys = []
    for i in range(n):
        k = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
        if i % 7 == 0:
            k += rnd.choice(wide)
        keys.append(k)
    return keys


@pytest.fixture(params=MODES, ids=MODE_IDS)
def ring(request):
    return HashRing({f"node{i}": 1 + i % 3 for i in range(1, 31)}, **request.param)


def test_every_door_gives_the_same_node(ring):
    keys = random_text_keys(3000)
    expected = np.array([ring.nodes.index(ring.get_node(k)) for k in keys], dtype=np.int32)
    doors = {
        "list": keys,
        "tuple": tuple(keys),
        "generator": (k for k in keys),
        "numpy U": np.array(keys, dtype="U"),
        "numpy object": np.array(keys, dtype=object),
        "numpy U non-contiguous": np.array(keys + keys, dtype="U").reshape(2, -1).T[:, 0].copy()[::1],
        "arrow string": pa.array(keys, pa.string()),
        "arrow large_string": pa.array(keys, pa.large_string()),
        "arrow string_view": pa.array(keys, pa.string_view()),
        "arrow chunked": pa.chunked_array([keys[:1000], keys[1000:2500], keys[2500:]]),
        "arrow sliced": pa.array(["pad"] + keys + ["pad"])[1:-1],
        "arrow dictionary": pa.array(keys).dictionary_encode(),
        "pandas object": pd.Series(keys, dtype=object),
        "pandas string[pyarrow]": pd.Series(keys, dtype="string[pyarrow]"),
        "pandas string[python]": pd.Series(keys, dtype="string[python]"),
        "pandas Index": pd.Index(keys, dtype=object),
    }
    for name, door in doors.items():
        got = ring.map(door)
        assert got.dtype == np.int32, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_bytes_and_int_doors(ring):
    raw = [k.encode() for k in random_text_keys(2000, seed=1)]
    # numpy 'S' strips trailing NULs, as indexing the array does: keep keys NUL-free at the end.
    raw = [b.rstrip(b"\0") for b in raw]
    expected = np.array([ring.nodes.index(ring.get_node(b)) for b in raw], dtype=np.int32)
    np.testing.assert_array_equal(ring.map(raw), expected)
    np.testing.assert_array_equal(ring.map(np.array(raw, dtype=object)), expected)
    np.testing.assert_array_equal(ring.map(np.array(raw, dtype="S")), expected)
    np.testing.assert_array_equal(ring.map(pa.array(raw, pa.binary())), expected)
    np.testing.assert_array_equal(ring.map(pa.array(raw, pa.large_binary())), expected)
    np.testing.assert_array_equal(ring.map([bytearray(b) for b in raw]), np.array(
        [ring.nodes.index(ring.get_node(bytearray(b))) for b in raw], dtype=np.int32))
    ints = [random.Random(2).randrange(-10**18, 10**19) for _ in range(2000)] + [0, -1, 2**64 - 1]
    expected = np.array([ring.nodes.index(ring.get_node(i)) for i in ints], dtype=np.int32)
    np.testing.assert_array_equal(ring.map(ints), expected)
    signed = np.array([i for i in ints if -2**63 <= i < 2**63], dtype=np.int64)
    np.testing.assert_array_equal(ring.map(signed), [ring.nodes.index(ring.get_node(int(i))) for i in signed])
    unsigned = np.array([i for i in ints if 0 <= i < 2**64], dtype=np.uint64)
    np.testing.assert_array_equal(ring.map(unsigned), [ring.nodes.index(ring.get_node(int(i))) for i in unsigned])
    for small in (np.int8, np.int16, np.uint32):
        a = np.arange(-50, 50).astype(small)
        np.testing.assert_array_equal(ring.map(a), [ring.nodes.index(ring.get_node(int(i))) for i in a])


def test_int_key_is_its_decimal_text():
    ring = HashRing([f"n{i}" for i in range(50)])
    for i in [0, 7, -12, 10**30, np.int64(99), np.uint8(3)]:
        assert ring.get_node(i) == ring.get_node(str(int(i)))
        assert hashring.hash64(i) == hashring.hash64(str(int(i)))


def test_uhashring_mode_hashes_bytes_as_their_repr():
    ring = HashRing([f"n{i}" for i in range(20)], compat="uhashring")
    for b in [b"abc", b"\xff\x00", b""]:
        assert ring.get_node(b) == ring.get_node(str(b))
    assert ring.get_node(bytearray(b"x")) == ring.get_node("bytearray(b'x')")
    native = HashRing([f"n{i}" for i in range(20)], compat="ketama")
    assert native.get_node(b"abc") == native.get_node("abc")


def test_prehashed_door_matches_hash64():
    for algo in ("xxh3", "md5", "murmur3"):
        ring = HashRing([f"n{i}" for i in range(40)], hash=algo)
        keys = random_text_keys(3000, seed=3)
        hashes = hashring.hash64_many(keys, algo)
        assert hashes.dtype == np.uint64
        assert [int(x) for x in hashes[:50]] == [hashring.hash64(k, algo) for k in keys[:50]]
        np.testing.assert_array_equal(ring.lookup_hashes(hashes), ring.map(keys))
    import hashlib
    for compat in ("ketama", "uhashring"):
        ring = HashRing([f"n{i}" for i in range(40)], compat=compat)
        keys = random_text_keys(2000, seed=4)
        h32 = np.array([int.from_bytes(hashlib.md5(k.encode()).digest()[:4], "little") for k in keys], np.uint64)
        np.testing.assert_array_equal(ring.lookup_hashes(h32), ring.map(keys))


def test_wrap_around_and_exact_points():
    ring = HashRing(["a", "b", "c"], vnodes=5)
    snap = ring.snapshot()
    pts, own = snap.points, snap.owners
    queries = np.array([0, int(pts[0]), int(pts[0]) + 1, int(pts[-1]), int(pts[-1]) + 1, 2**64 - 1], np.uint64)
    got = ring.lookup_hashes(queries)
    expect = [own[0], own[0], own[1], own[-1], own[0], own[0]]
    assert list(got) == list(expect)


def test_preference_lists(ring):
    keys = random_text_keys(2000, seed=5)
    mat = ring.map_nodes(keys, 3)
    assert mat.shape == (2000, 3) and mat.dtype == np.int32
    first = ring.map(keys)
    np.testing.assert_array_equal(mat[:, 0], first)
    for k, row in zip(keys[:300], mat[:300]):
        names = ring.get_nodes(k, 3)
        assert names == [ring.nodes[i] for i in row]
        assert names[0] == ring.get_node(k)
        assert len(set(names)) == 3
    everyone = ring.get_nodes("x", len(ring))
    assert sorted(everyone) == sorted(ring.nodes)


def test_node_management_and_introspection():
    ring = HashRing({"a": 1, "b": 2.5})
    assert ring.nodes == ("a", "b") and len(ring) == 2 and "a" in ring and "z" not in ring
    assert dict(ring.weights) == {"a": 1, "b": 2.5}
    assert len(ring.snapshot().points) == 1024 + 2560
    ring.add_node("c", 0.5)
    assert ring.nodes == ("a", "b", "c") and len(ring.snapshot().points) == 1024 + 2560 + 512
    ring.set_weight("a", 2)
    assert ring.nodes == ("a", "b", "c") and ring.weights["a"] == 2
    ring.remove_node("b")
    assert ring.nodes == ("a", "c")
    shares = ring.shares()
    assert set(shares) == {"a", "c"} and abs(sum(shares.values()) - 1) < 1e-9
    assert shares["a"] > shares["c"]
    # incremental changes equal a fresh build
    fresh = HashRing({"a": 2, "c": 0.5})
    np.testing.assert_array_equal(ring.snapshot().points, fresh.snapshot().points)
    np.testing.assert_array_equal(ring.snapshot().owners, fresh.snapshot().owners)
    assert ring == fresh
    assert list(ring) == ["a", "c"]


def test_snapshot_is_stable_across_changes():
    ring = HashRing(["a", "b", "c"])
    snap = ring.snapshot()
    keys = random_text_keys(500)
    before = snap.map(keys)
    ring.add_node("d")
    ring.remove_node("a")
    np.testing.assert_array_equal(snap.map(keys), before)
    assert snap.nodes == ("a", "b", "c") and ring.nodes == ("b", "c", "d")


def test_pickle_copy_repr(ring):
    keys = random_text_keys(500)
    for other in (pickle.loads(pickle.dumps(ring)), copy.copy(ring), copy.deepcopy(ring)):
        assert other == ring
        np.testing.assert_array_equal(other.map(keys), ring.map(keys))
        other.add_node("zzz")
        assert "zzz" not in ring
    text = repr(ring)
    assert "30 nodes" in text and "node1" in text and "points" in text
    assert repr(HashRing()) .startswith("HashRing(0 nodes")


def test_empty_ring():
    ring = HashRing()
    for call in (lambda: ring.get_node("k"), lambda: ring.get_nodes("k", 1), lambda: ring.map(["k"]),
                 lambda: ring.lookup_hashes(np.zeros(1, np.uint64)), lambda: ring.map([])):
        with pytest.raises(EmptyRingError, match="empty"):
            call()
    assert isinstance(EmptyRingError(), LookupError)
    ring.add_node("only")
    assert ring.get_node("k") == "only" and list(ring.map(["a", "b"])) == [0, 0]
    assert ring.shares() == {"only": 1.0}
    ring.remove_node("only")
    with pytest.raises(EmptyRingError):
        ring.get_node("k")
    assert ring.shares() == {}


def test_public_hash64_matches_oracles():
    import hashlib

    xxhash = pytest.importorskip("xxhash")
    mmh3 = pytest.importorskip("mmh3")
    for k in random_text_keys(500, seed=9) + ["", "a" * 300]:
        b = k.encode()
        assert hashring.hash64(k) == xxhash.xxh3_64_intdigest(b)
        assert hashring.hash64(b, "md5") == int.from_bytes(hashlib.md5(b).digest()[:8], "little")
        assert hashring.hash64(memoryview(b), "murmur3") == mmh3.hash64(b, signed=False)[0]
    with pytest.raises(ValueError, match="algo"):
        hashring.hash64("x", "sha1")


def test_vnode_points_follow_the_rule():
    xxhash = pytest.importorskip("xxhash")
    ring = HashRing({"alpha": 1, "béta": 0.01}, vnodes=100)
    expected = sorted([xxhash.xxh3_64_intdigest(f"alpha-{j}".encode()) for j in range(100)]
                      + [xxhash.xxh3_64_intdigest("béta-0".encode())])
    assert [int(p) for p in ring.snapshot().points] == expected


def test_more_doors(ring):
    import collections

    keys = random_text_keys(200, seed=11)
    expected = ring.map(keys)
    NT = collections.namedtuple("NT", [f"f{i}" for i in range(5)])
    np.testing.assert_array_equal(ring.map(NT(*keys[:5])), expected[:5])
    s = pd.Series(keys)
    for door in (s.values, s.array, pd.Categorical(keys), np.ma.array(keys),
                 np.array(keys, dtype=np.dtypes.StringDType())):
        np.testing.assert_array_equal(ring.map(door), expected)
    ints = list(range(-20, 20))
    want = ring.map(ints)
    for door in (pd.array(ints), pd.Series(ints, dtype="Int64"), pd.Series(ints, dtype="int64[pyarrow]")):
        np.testing.assert_array_equal(ring.map(door), want)
    with pytest.raises(TypeError, match=r"keys\[1\]: key must not be None/NA"):
        ring.map(pd.Series([1, None], dtype="Int64"))
    with pytest.raises(TypeError, match=r"keys\[0\]: key must not be masked"):
        ring.map(np.ma.array(["a", "b"], mask=[True, False]))


def test_uhashring_mode_uses_str_of_subclasses():
    class Tagged(str):
        def __str__(self):
            return "tag:" + super().__str__()

    ring = HashRing([f"n{i}" for i in range(20)], compat="uhashring")
    for k in ("abc", "xyz", "ключ"):
        assert ring.get_node(Tagged(k)) == ring.get_node("tag:" + k)
        assert list(ring.map([Tagged(k)])) == [ring.nodes.index(ring.get_node("tag:" + k))]


class MyRing(HashRing):
    __slots__ = ()


def test_subclass_survives_pickle_and_copy():
    ring = MyRing(["a", "b"])
    for other in (pickle.loads(pickle.dumps(ring)), copy.copy(ring), copy.deepcopy(ring)):
        assert type(other) is MyRing and other == ring
    snap = ring.snapshot()
    assert pickle.loads(pickle.dumps(snap)) == snap


@pytest.fixture(params=["scalar", "avx2", "avx512"])
def search_kernel(request):
    from hashring import _ring

    before = _ring._search_kernel()
    if _ring._search_kernel(request.param) != request.param:
        pytest.skip(f"this CPU does not run the {request.param} kernel")
    yield request.param
    _ring._search_kernel(before)


@pytest.mark.parametrize("n_nodes, vnodes", [(3, None), (100, None), (200, None), (70_000, 1)])
def test_every_table_size_agrees_with_searchsorted(n_nodes, vnodes, search_kernel):
    # 3 nodes: a full table searched in cache; 100: a packed one, prefetched; 200: packed
    # in its own huge-page mapping; 70,000 nodes of one point: packed with more prefix
    # bits than the points alone would get. Every compare kernel the CPU runs.
    ring = HashRing([f"n{i}" for i in range(n_nodes)], vnodes=vnodes)
    assert ring.snapshot()._table.packed == (n_nodes > 3)
    snap = ring.snapshot()
    hashes = np.random.default_rng(n_nodes).integers(0, 2**64 - 1, size=300_000, dtype=np.uint64)
    hashes[:4] = [0, 2**64 - 1, snap.points[0], snap.points[-1]]
    idx = np.searchsorted(snap.points, hashes, side="left")
    idx[idx == len(snap.points)] = 0
    np.testing.assert_array_equal(ring.lookup_hashes(hashes), snap.owners[idx])


def test_threads_split_batches_without_changing_answers(ring, monkeypatch):
    import hashring.ring as ring_module

    monkeypatch.setattr(ring_module, "MIN_KEYS_PER_THREAD", 500)
    keys = random_text_keys(5000, seed=21)
    expected = ring.map(keys)
    chunked = pa.chunked_array([keys[:1234], keys[1234:]])
    for threads in (2, 3, 0):
        for door in (keys, np.array(keys), chunked):
            np.testing.assert_array_equal(ring.map(door, threads=threads), expected)
        np.testing.assert_array_equal(ring.map_nodes(keys, 3, threads=threads), ring.map_nodes(keys, 3))
    hashes = (np.arange(5000, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    np.testing.assert_array_equal(ring.lookup_hashes(hashes, threads=2), ring.lookup_hashes(hashes))


def test_threads_report_the_first_bad_key(monkeypatch):
    import hashring.ring as ring_module

    monkeypatch.setattr(ring_module, "MIN_KEYS_PER_THREAD", 100)
    ring = HashRing(["a", "b", "c"])
    keys = [f"k{i}" for i in range(1000)]
    keys[700], keys[300] = 1.5, object()
    for threads in (1, 4):
        with pytest.raises(TypeError, match=r"keys\[300\]"):
            ring.map(keys, threads=threads)
    for bad, exc in ((-1, ValueError), (True, TypeError), (1.5, TypeError), ("2", TypeError)):
        with pytest.raises(exc, match="threads"):
            ring.map(["x"], threads=bad)


def test_long_preference_lists_match_a_walk_of_the_points():
    ring = HashRing({f"n{i}": 1 + i % 4 for i in range(40)}, vnodes=8)
    snap = ring.snapshot()
    keys = random_text_keys(300, seed=4)
    for n in (1, 16, 17, 40):
        mat = ring.map_nodes(keys, n)
        for key, row in zip(keys, mat):
            i = int(np.searchsorted(snap.points, hashring.hash64(key))) % len(snap.points)
            walk = []
            while len(walk) < n:
                owner = int(snap.owners[i])
                if owner not in walk:
                    walk.append(owner)
                i = (i + 1) % len(snap.points)
            assert row.tolist() == walk
            assert ring.get_nodes(key, n) == [ring.nodes[o] for o in walk]


def test_numpy_s_keys_lose_only_their_trailing_nul_bytes():
    rnd = random.Random(8)
    for width in (1, 7, 8, 9, 16, 23):
        raw = [bytes(rnd.choice(b"\0\0ab\xff") for _ in range(rnd.randrange(width + 1))) for _ in range(500)]
        raw += [b"", b"\0" * width, b"a" + b"\0" * (width - 1), b"\0" * (width - 1) + b"a"]
        arr = np.array(raw, dtype=f"S{width}")
        expected = [k.rstrip(b"\0") for k in raw]
        assert [bytes(x) for x in arr] == expected          # numpy's own view of the keys
        np.testing.assert_array_equal(hashring.hash64_many(arr), hashring.hash64_many(expected))
