"""Bit-exactness of the C hash kernels (hashring/_hashes.h) against oracles.

Oracles: ``xxhash`` (XXH3-64), ``hashlib`` (MD5), ``mmh3`` (MurmurHash3_x64_128).
"""

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

xxhash = pytest.importorskip("xxhash")
mmh3 = pytest.importorskip("mmh3")

from hashring._hashes import (  # noqa: E402
    md5,
    md5_32,
    md5_64,
    murmur3_64,
    murmur3_128,
    xxh3_64,
)

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1

# Lengths that exercise the XXH3 long path: several 1024-byte blocks, full and
# partial last stripes, exact block multiples (the last block is never
# scrambled), plus the 4096-byte GIL-release threshold of the Python layer.
LONG_LENGTHS = [
    1025, 1087, 1088, 1089, 1151, 1500, 2047, 2048, 2049, 2111, 2112, 3000,
    3071, 3072, 3073, 4095, 4096, 4097, 5000, 6143, 6144, 6145, 7777, 8191,
    8192, 8193, 9216, 9999, 10000,
]


def _rand_bytes(rng, n):
    return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


def _rand_u64(rng, k):
    seeds = [int(s) for s in rng.integers(0, 1 << 64, size=k, dtype=np.uint64)]
    # make sure the top bit (and the bswap32 of the low half) are exercised
    seeds += [s | (1 << 63) for s in seeds[: max(1, k // 2)]]
    return seeds


def _mmh3_pair(b, seed=0):
    return mmh3.hash64(b, seed=seed, x64arch=True, signed=False)


# --------------------------------------------------------------------------
# Known-answer vectors (independent of the oracle packages)
# --------------------------------------------------------------------------

RFC1321_SUITE = [
    (b"", "d41d8cd98f00b204e9800998ecf8427e"),
    (b"a", "0cc175b9c0f1b6a831c399e269772661"),
    (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
    (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
    (b"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "d174ab98d277d9f5a5611c2c9f419d9f",
    ),
    (b"1234567890" * 8, "57edf4a22be3c955ac49da2e2107b67a"),
]


@pytest.mark.parametrize("msg,hexdigest", RFC1321_SUITE)
def test_md5_rfc1321_suite(msg, hexdigest):
    d = md5(msg)
    assert isinstance(d, bytes) and len(d) == 16
    assert d.hex() == hexdigest
    assert md5_64(msg) == int.from_bytes(d[:8], "little")
    assert md5_32(msg) == int.from_bytes(d[:4], "little")


def test_xxh3_known_values():
    assert xxh3_64(b"") == 0x2D06800538D394C2
    assert xxh3_64(b"abc") == 0x78AF5F94892F3950


# --------------------------------------------------------------------------
# XXH3-64
# --------------------------------------------------------------------------


def test_xxh3_every_length_0_to_1024():
    rng = np.random.default_rng(0x5EED_0001)
    seeds = [0, 1, U64_MAX, 1 << 63, 0x00000000FFFFFFFF, 0xFFFFFFFF00000000]
    for n in range(1025):
        b = _rand_bytes(rng, n)
        assert xxh3_64(b) == xxhash.xxh3_64_intdigest(b), n
        for seed in seeds + _rand_u64(rng, 2):
            assert xxh3_64(b, seed) == xxhash.xxh3_64_intdigest(b, seed=seed), (n, seed)


def test_xxh3_long_lengths():
    rng = np.random.default_rng(0x5EED_0002)
    for n in LONG_LENGTHS:
        b = _rand_bytes(rng, n)
        assert xxh3_64(b) == xxhash.xxh3_64_intdigest(b), n
        assert xxh3_64(b, seed=0) == xxhash.xxh3_64_intdigest(b), n
        for seed in [1, U64_MAX] + _rand_u64(rng, 3):
            assert xxh3_64(b, seed) == xxhash.xxh3_64_intdigest(b, seed=seed), (n, seed)


def test_xxh3_random_inputs():
    rng = np.random.default_rng(0x5EED_0003)
    # mostly short keys (the hot case), some medium, a few long
    lengths = np.concatenate([
        rng.integers(0, 48, size=3000),
        rng.integers(48, 260, size=1500),
        rng.integers(260, 5000, size=200),
    ])
    seeds = _rand_u64(rng, len(lengths))
    for n, seed in zip(lengths.tolist(), seeds):
        b = _rand_bytes(rng, n)
        assert xxh3_64(b) == xxhash.xxh3_64_intdigest(b), n
        assert xxh3_64(b, seed) == xxhash.xxh3_64_intdigest(b, seed=seed), (n, seed)


def test_xxh3_low_entropy_inputs():
    # constant and nearly-constant buffers (catch wrong offsets that random
    # data could mask only with negligible probability anyway, but cheap)
    for n in list(range(0, 300)) + [1024, 1025, 2048, 4097]:
        for fill in (0x00, 0xFF):
            b = bytes([fill]) * n
            assert xxh3_64(b) == xxhash.xxh3_64_intdigest(b)
            assert xxh3_64(b, 7) == xxhash.xxh3_64_intdigest(b, seed=7)


def test_xxh3_seed_validation():
    b = b"key"
    assert xxh3_64(b, U64_MAX) == xxhash.xxh3_64_intdigest(b, seed=U64_MAX)
    assert xxh3_64(b, seed=np.uint64(5)) == xxhash.xxh3_64_intdigest(b, seed=5)
    for bad in (-1, 1 << 64, -(1 << 70), 1 << 100):
        with pytest.raises(ValueError, match="seed"):
            xxh3_64(b, bad)
    with pytest.raises(TypeError):
        xxh3_64(b, 1.5)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, U64_MAX))
def test_xxh3_hypothesis(b, seed):
    assert xxh3_64(b) == xxhash.xxh3_64_intdigest(b)
    assert xxh3_64(b, seed) == xxhash.xxh3_64_intdigest(b, seed=seed)


# --------------------------------------------------------------------------
# MD5
# --------------------------------------------------------------------------


def _check_md5(b):
    d = hashlib.md5(b).digest()
    assert md5(b) == d, len(b)
    assert md5_64(b) == int.from_bytes(d[:8], "little"), len(b)
    assert md5_32(b) == int.from_bytes(d[:4], "little"), len(b)


def test_md5_every_length_0_to_1024():
    rng = np.random.default_rng(0x5EED_0004)
    for n in range(1025):
        _check_md5(_rand_bytes(rng, n))


def test_md5_long_and_random():
    rng = np.random.default_rng(0x5EED_0005)
    for n in LONG_LENGTHS:
        _check_md5(_rand_bytes(rng, n))
    for n in rng.integers(0, 300, size=2000).tolist():
        _check_md5(_rand_bytes(rng, n))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=3000))
def test_md5_hypothesis(b):
    _check_md5(b)


# --------------------------------------------------------------------------
# MurmurHash3_x64_128
# --------------------------------------------------------------------------


def test_mmh3_hash128_packing():
    # Verified rather than assumed: mmh3.hash128(x64arch=True) packs the pair
    # as h1 | (h2 << 64), i.e. the 16-byte digest h1_le || h2_le read
    # little-endian; mmh3.hash64 returns (h1, h2).
    for b in (b"", b"hello", b"x" * 31, bytes(range(100))):
        h1, h2 = _mmh3_pair(b, 0)
        assert mmh3.hash128(b, seed=0, x64arch=True, signed=False) == h1 | (h2 << 64)
        assert mmh3.hash_bytes(b, seed=0, x64arch=True) == (
            h1.to_bytes(8, "little") + h2.to_bytes(8, "little")
        )
        assert murmur3_128(b) == (h1, h2)


def _check_murmur(b, seed):
    h1, h2 = murmur3_128(b, seed)
    assert (h1, h2) == _mmh3_pair(b, seed), (len(b), seed)
    assert mmh3.hash128(b, seed=seed, x64arch=True, signed=False) == h1 | (h2 << 64)
    if seed == 0:
        assert murmur3_64(b) == h1


def test_murmur3_every_length_0_to_1024():
    rng = np.random.default_rng(0x5EED_0006)
    fixed = [0, 1, 0x7FFFFFFF, 0x80000000, U32_MAX]
    for n in range(1025):
        b = _rand_bytes(rng, n)
        _check_murmur(b, 0)
        for seed in fixed + [int(s) for s in rng.integers(0, 1 << 32, size=2)]:
            _check_murmur(b, seed)


def test_murmur3_long_and_random():
    rng = np.random.default_rng(0x5EED_0007)
    for n in LONG_LENGTHS:
        b = _rand_bytes(rng, n)
        _check_murmur(b, 0)
        _check_murmur(b, int(rng.integers(0, 1 << 32)))
    for n in rng.integers(0, 100, size=3000).tolist():
        b = _rand_bytes(rng, n)
        _check_murmur(b, 0)
        _check_murmur(b, int(rng.integers(0, 1 << 32)))


def test_murmur3_seed_validation():
    assert murmur3_128(b"k", U32_MAX) == _mmh3_pair(b"k", U32_MAX)
    for bad in (-1, 1 << 32, 1 << 64):
        with pytest.raises(ValueError, match="seed"):
            murmur3_128(b"k", bad)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, U32_MAX))
def test_murmur3_hypothesis(b, seed):
    _check_murmur(b, 0)
    _check_murmur(b, seed)


# --------------------------------------------------------------------------
# Buffer handling
# --------------------------------------------------------------------------

ALL_FUNCS = [
    lambda x: xxh3_64(x),
    lambda x: xxh3_64(x, 0x9E3779B97F4A7C15),
    md5,
    md5_64,
    md5_32,
    lambda x: murmur3_128(x),
    lambda x: murmur3_128(x, 12345),
    murmur3_64,
]


def test_unaligned_inputs():
    rng = np.random.default_rng(0x5EED_0008)
    buf = _rand_bytes(rng, 12000)
    mv = memoryview(buf)
    lengths = list(range(0, 70)) + [96, 97, 127, 128, 129, 200, 240, 241, 255,
                                    256, 1024, 1025, 2049, 4097, 10000]
    for off in range(1, 8):
        for n in lengths:
            view = mv[off:off + n]
            ref = bytes(view)
            for f in ALL_FUNCS:
                assert f(view) == f(ref), (off, n)
            assert xxh3_64(view) == xxhash.xxh3_64_intdigest(ref)


def test_buffer_types_accepted():
    rng = np.random.default_rng(0x5EED_0009)
    for n in (0, 1, 5, 16, 33, 300, 5000):
        ref = _rand_bytes(rng, n)
        variants = [
            bytearray(ref),
            memoryview(ref),
            memoryview(bytearray(ref)),
            np.frombuffer(ref, dtype=np.uint8),
            np.frombuffer(ref, dtype=np.uint8).copy(),  # writable array
        ]
        for v in variants:
            for f in ALL_FUNCS:
                assert f(v) == f(ref), (type(v), n)


def test_empty_inputs():
    empties = [b"", bytearray(), memoryview(b""), memoryview(b"abc")[1:1],
               np.zeros(0, dtype=np.uint8)]
    for e in empties:
        assert xxh3_64(e) == xxhash.xxh3_64_intdigest(b"")
        assert xxh3_64(e, U64_MAX) == xxhash.xxh3_64_intdigest(b"", seed=U64_MAX)
        assert md5(e) == hashlib.md5(b"").digest()
        assert murmur3_128(e, 3) == _mmh3_pair(b"", 3)
        assert murmur3_64(e) == _mmh3_pair(b"")[0]


def test_bad_inputs_rejected():
    noncontig = memoryview(b"abcdefgh")[::2]
    for f in ALL_FUNCS:
        with pytest.raises((TypeError, ValueError, BufferError)):
            f(noncontig)
        with pytest.raises((TypeError, ValueError, BufferError)):
            f("abc")
        with pytest.raises((TypeError, ValueError, BufferError)):
            f(None)


def test_long_inputs_from_threads():
    # inputs > 4096 bytes are hashed with the GIL released
    rng = np.random.default_rng(0x5EED_000A)
    bufs = [_rand_bytes(rng, int(n)) for n in rng.integers(4097, 20000, size=64)]
    expected = [(xxhash.xxh3_64_intdigest(b, seed=99), hashlib.md5(b).digest(),
                 _mmh3_pair(b, 5)) for b in bufs]

    def work(b):
        return xxh3_64(b, 99), md5(b), murmur3_128(b, 5)

    with ThreadPoolExecutor(max_workers=4) as ex:
        for _ in range(5):
            assert list(ex.map(work, bufs)) == expected


def test_md5_batches_of_every_length_match_hashlib():
    """Batches hash md5 eight short keys at a time; lengths around the one-block limit
    (55 bytes) and groups that mix short and long keys take the other path."""
    import hashring

    pa = pytest.importorskip("pyarrow")
    rnd = random.Random(3)
    keys = [bytes(rnd.randrange(1, 256) for _ in range(n)) for n in list(range(130)) * 3]
    rnd.shuffle(keys)
    expected = [int.from_bytes(hashlib.md5(k).digest()[:8], "little") for k in keys]
    assert hashring.hash64_many(keys, "md5").tolist() == expected
    assert hashring.hash64_many(pa.array(keys, pa.binary()), "md5").tolist() == expected
    nonzero_tail = [k for k in keys if not k.endswith(b"\0")]        # numpy S strips NULs
    assert hashring.hash64_many(np.array(nonzero_tail, dtype="S"), "md5").tolist() == [
        int.from_bytes(hashlib.md5(k).digest()[:8], "little") for k in nonzero_tail]
