"""Plain-Python reference ring: the test oracle (and a slow baseline).

Every rule of the package is written here once, as directly as possible; the
compiled ring must give the same answers. Rings are rebuilt from scratch on
every change, which keeps the code obviously correct and makes it slow.

Modes
-----
compat=None (native)
    Point j of node ``name`` (0 <= j < count) is ``H64(f"{name}-{j}")``, where
    H64 is xxh3-64 (seed 0), the first 8 md5 bytes read little-endian, or the
    first 64-bit word of murmur3 x64-128 (seed 0). ``count = max(1,
    floor(vnodes * weight + 0.5))``: absolute, so adding a node never moves
    another node's points. Ring order is ``(value, name, j)``. A key goes to the
    first point whose value is >= its hash, wrapping to the first point.

compat="ketama" (libketama)
    ``ks = floorf(pct * vnodes * (float)N)`` md5 groups per node with float32
    ``pct = (float)w / (float)W``; the product is computed in double and
    rounded to float32 by the call. Group k of node ``name`` is
    ``md5(f"{name}-{k}")`` and gives 4 points, the little-endian uint32 words
    of the digest. Ties keep node insertion order, then k, then the word
    index. A key hashes to the first md5 word of its bytes and goes to the
    first point >= that hash, wrapping.

compat="uhashring" (uhashring 2.5, ``hash_fn='ketama'``)
    ``ks = (vnodes * N * w) // W`` groups, points as above. Every copy of a
    colliding point value belongs to the node latest in insertion order. A key
    hashes like ketama but over ``str(key)``, and goes to the first point
    strictly greater than its hash, wrapping.

In the compat modes a node may get no points at all (an extreme weight, or a
tiny ``vnodes``); it is then never returned, and ``get_nodes`` with ``n`` above
the number of nodes that own points raises ``ValueError`` (uhashring's
``range`` would return fewer names).
"""

import bisect
import hashlib
import math
import operator
import struct
from collections.abc import Mapping

__all__ = ["DEFAULT_VNODES", "HASHES", "COMPAT_MODES", "PyRing", "key_bytes", "hash64", "md5_u32"]

DEFAULT_VNODES = {None: 1024, "ketama": 40, "uhashring": 40}
HASHES = ("xxh3", "md5", "murmur3")
COMPAT_MODES = (None, "ketama", "uhashring")


# ---------------------------------------------------------------- hashes


def _xxh3(b):
    import xxhash

    return xxhash.xxh3_64_intdigest(b)


def _md5_64(b):
    return int.from_bytes(hashlib.md5(b).digest()[:8], "little")


def _murmur3(b):
    import mmh3

    return mmh3.hash64(b, signed=False)[0]


_HASH64 = {"xxh3": _xxh3, "md5": _md5_64, "murmur3": _murmur3}


def hash64(b, hash="xxh3"):
    """The native 64-bit hash of the bytes ``b``."""
    return _HASH64[hash](b)


def md5_u32(b):
    """The ketama hash: the first 4 md5 bytes of ``b``, little-endian."""
    return int.from_bytes(hashlib.md5(b).digest()[:4], "little")


def _md5_words(b):
    """The 4 ketama points of one md5 group: the digest's little-endian uint32 words."""
    d = hashlib.md5(b).digest()
    return [int.from_bytes(d[4 * r : 4 * r + 4], "little") for r in range(4)]


def _float32(x):
    """Round a Python float to the nearest IEEE binary32 value (ties to even)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---------------------------------------------------------------- keys


def _int_key(key):
    """str(int) of an integer key; None if ``key`` is not an integer. bool is not an integer here."""
    if isinstance(key, bool) or not hasattr(type(key), "__index__"):
        return None
    return str(operator.index(key))


def key_bytes(key, compat=None):
    """The bytes a key is hashed as (see the module docstring for the modes)."""
    if compat == "uhashring":
        if isinstance(key, (str, bytes, bytearray)):
            return str(key).encode("utf-8")
        s = _int_key(key)
        if s is None:
            raise TypeError(f"key must be str, bytes, bytearray or int, not {type(key).__name__}")
        return s.encode("ascii")
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    s = _int_key(key)
    if s is None:
        raise TypeError(f"key must be str, bytes-like or int, not {type(key).__name__}")
    return s.encode("ascii")


# ---------------------------------------------------------------- ring


class PyRing:
    """Reference consistent hash ring. See the module docstring for the rules."""

    def __init__(self, nodes, *, vnodes=None, hash=None, compat=None):
        if compat not in COMPAT_MODES:
            raise ValueError(f"compat must be None, 'ketama' or 'uhashring', not {compat!r}")
        if compat is None:
            hash = "xxh3" if hash is None else hash
            if hash not in HASHES:
                raise ValueError(f"hash must be one of {HASHES}, not {hash!r}")
        else:
            if hash not in (None, "md5"):
                raise ValueError(f"hash must be 'md5' (or None) with compat={compat!r}, not {hash!r}")
            hash = "md5"
        if vnodes is None:
            vnodes = DEFAULT_VNODES[compat]
        if isinstance(vnodes, bool) or not hasattr(type(vnodes), "__index__"):
            raise TypeError(f"vnodes must be an int, not {type(vnodes).__name__}")
        vnodes = operator.index(vnodes)
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, not {vnodes}")
        self._compat = compat
        self._hash = hash
        self._vnodes = vnodes

        if isinstance(nodes, (str, bytes)):
            raise TypeError("nodes must be an iterable of names or a mapping name -> weight, not a single string")
        items = list(nodes.items()) if isinstance(nodes, Mapping) else [(name, 1) for name in nodes]
        weights = {}
        for name, weight in items:
            self._check_name(name)
            if name in weights:
                raise ValueError(f"duplicate node name {name!r} in nodes")
            weights[name] = self._check_weight(weight)
        self._build(weights)

    # -------------------------------------------------------- validation

    @staticmethod
    def _check_name(name):
        if not isinstance(name, str):
            raise TypeError(f"node name must be str, not {type(name).__name__}")
        if not name:
            raise ValueError("node name must not be empty")

    def _check_weight(self, weight):
        if isinstance(weight, bool):
            raise TypeError("weight must be a number, not bool")
        if hasattr(type(weight), "__index__"):
            weight = operator.index(weight)
        elif self._compat is None and isinstance(weight, float):
            if not math.isfinite(weight):
                raise ValueError(f"weight must be finite, not {weight!r}")
        else:
            kind = "an int" if self._compat else "an int or a float"
            raise TypeError(f"weight must be {kind}, not {type(weight).__name__}")
        if weight <= 0:
            raise ValueError(f"weight must be > 0, not {weight!r}")
        return weight

    # -------------------------------------------------------- building

    def _groups(self, weights, weight):
        """Number of md5 groups (4 points each) of a node in a compat mode."""
        n, total, v = len(weights), sum(weights.values()), self._vnodes
        if self._compat == "uhashring":
            return (v * n * weight) // total
        # libketama: float pct = (float)w / (float)W; floorf(pct * 40.0 * (float)N)
        pct = _float32(_float32(weight) / _float32(total))
        return math.floor(_float32(pct * float(v) * _float32(n)))

    def _build(self, weights):
        """Build the ring of ``weights`` (name -> weight) and only then install it."""
        # Each entry: (value, tie-break..., owner name). Sorting the tuples gives ring order.
        entries = []
        if self._compat is None:
            h = _HASH64[self._hash]
            for name, weight in weights.items():
                count = max(1, math.floor(self._vnodes * weight + 0.5))
                for j in range(count):
                    entries.append((h(f"{name}-{j}".encode("utf-8")), name, j, name))
        else:
            for order, (name, weight) in enumerate(weights.items()):
                for k in range(self._groups(weights, weight)):
                    for r, value in enumerate(_md5_words(f"{name}-{k}".encode("utf-8"))):
                        entries.append((value, order, k, r, name))
        if weights and not entries:
            raise ValueError(f"vnodes={self._vnodes} gives no points to any of the {len(weights)} nodes")
        entries.sort()
        values = [e[0] for e in entries]
        owners = [e[-1] for e in entries]
        if self._compat == "uhashring":
            # the last writer (latest in insertion order) owns every copy of a value
            for i in range(len(values) - 2, -1, -1):
                if values[i] == values[i + 1]:
                    owners[i] = owners[i + 1]
        self._weights = weights
        self._values = values
        self._owners = owners
        self._index = {name: i for i, name in enumerate(weights)}

    # -------------------------------------------------------- properties

    @property
    def nodes(self):
        return tuple(self._weights)

    @property
    def weights(self):
        return dict(self._weights)

    @property
    def vnodes(self):
        return self._vnodes

    @property
    def hash(self):
        return self._hash

    @property
    def compat(self):
        return self._compat

    def __len__(self):
        return len(self._weights)

    def __contains__(self, name):
        return name in self._weights

    def __repr__(self):
        return f"PyRing({len(self)} nodes, {len(self._values)} points, hash={self._hash!r}, compat={self._compat!r})"

    def points(self):
        """All ring points as (value, owner name), in ring order."""
        return list(zip(self._values, self._owners))

    # -------------------------------------------------------- lookups

    def key_hash(self, key):
        b = key_bytes(key, self._compat)
        return _HASH64[self._hash](b) if self._compat is None else md5_u32(b)

    def _position(self, key):
        """Index of the point that owns ``key``."""
        h = self.key_hash(key)
        if not self._values:
            raise LookupError("ring is empty")
        if self._compat == "uhashring":
            i = bisect.bisect_right(self._values, h)  # first point > h
        else:
            i = bisect.bisect_left(self._values, h)  # first point >= h
        return 0 if i == len(self._values) else i

    def get_node(self, key):
        return self._owners[self._position(key)]

    def get_nodes(self, key, n):
        if isinstance(n, bool) or not hasattr(type(n), "__index__"):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        n = operator.index(n)
        pos = self._position(key)
        if not 1 <= n <= len(self._weights):
            raise ValueError(f"n must be between 1 and {len(self._weights)}, not {n}")
        found = {}  # a dict keeps the order of first appearance
        for name in self._owners[pos:] + self._owners[:pos]:
            found.setdefault(name)
            if len(found) == n:
                break
        if len(found) < n:
            raise ValueError(f"n={n} exceeds the {len(found)} nodes that own points on the ring")
        return list(found)

    def map(self, keys):
        return [self._index[self.get_node(key)] for key in keys]

    # -------------------------------------------------------- changes

    def add_node(self, name, weight=1):
        self._check_name(name)
        if name in self._weights:
            raise ValueError(f"node {name!r} is already in the ring")
        self._build({**self._weights, name: self._check_weight(weight)})

    def remove_node(self, name):
        if name not in self._weights:
            raise KeyError(name)
        self._build({k: w for k, w in self._weights.items() if k != name})

    def set_weight(self, name, weight):
        if name not in self._weights:
            raise KeyError(name)
        self._build({**self._weights, name: self._check_weight(weight)})
