"""Key doors: turn whatever the caller passes into batches the compiled kernels read.

The rule for one key, whichever door it enters by:

- ``str`` hashes as its UTF-8 bytes (strict: lone surrogates are refused);
- ``bytes``, ``bytearray`` and ``memoryview`` hash as their bytes;
- ``int`` (anything with ``__index__``, but not ``bool``) hashes as its decimal digits,
  so ``42`` and ``"42"`` are the same key;
- in ``compat="uhashring"`` mode every key hashes as ``str(key)``, as uhashring does,
  so ``b"ab"`` hashes as the text ``"b'ab'"``.

Batches: lists/tuples/iterables of such keys; numpy arrays of dtype ``S`` (trailing NULs
stripped, as numpy does when indexing), ``U``, ``object`` and integers (decimal, as
above); pyarrow string/binary arrays (also large and view types, chunked arrays) and
pandas Series/Index, without a Python-level loop when they are Arrow-backed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _ring
from ._ring import KeyBatch

_HASH_IDS = {"xxh3": _ring.ALGO_XXH3, "md5": _ring.ALGO_MD5, "murmur3": _ring.ALGO_MURMUR3}

__all__ = ["hash64", "hash64_many"]


def _algo_id(algo: str) -> int:
    try:
        return _HASH_IDS[algo]
    except (KeyError, TypeError):
        raise ValueError(f"algo must be one of {sorted(_HASH_IDS)}, not {algo!r}") from None


def hash64(data, algo: str = "xxh3") -> int:
    """64-bit hash of one key, by the key rule of this module.

    ``xxh3`` is XXH3_64bits (seed 0), ``md5`` the first 8 digest bytes read
    little-endian, ``murmur3`` the first 64 bits (h1) of MurmurHash3_x64_128, seed 0.
    """
    return _ring.key_query_value(_ring.key_bytes(data), _algo_id(algo))


def hash64_many(keys, algo: str = "xxh3") -> np.ndarray:
    """``hash64`` of every key of a batch, as a uint64 array."""
    algo_id = _algo_id(algo)
    batches = key_batches(keys, bytes_repr=False)
    out = np.empty(sum(b.length for b in batches), dtype=np.uint64)
    pos = 0
    for kb in batches:
        _ring.hash_batch(kb, algo_id, out[pos:pos + kb.length])
        pos += kb.length
    return out


def key_batches(keys, bytes_repr: bool) -> list[KeyBatch]:
    """Normalise a batch of keys into one KeyBatch per contiguous piece (Arrow chunks)."""
    if isinstance(keys, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"keys must be a collection of keys (list, tuple, numpy or Arrow array), not a single "
            f"{type(keys).__name__}; use get_node() for one key"
        )
    if isinstance(keys, Mapping):
        raise TypeError("keys must be a collection of keys, not a mapping")
    if type(keys) is np.ndarray:
        return [_from_numpy(keys, bytes_repr)]
    if isinstance(keys, np.ma.MaskedArray):
        if np.ma.count_masked(keys):
            first = int(np.flatnonzero(np.ma.getmaskarray(keys))[0])
            raise TypeError(f"keys[{first}]: key must not be masked")
        return [_from_numpy(np.asarray(keys.data), bytes_repr)]
    module = type(keys).__module__ or ""
    if module.startswith("pyarrow"):
        return _from_arrow(keys, bytes_repr, 0)
    if module.startswith("pandas"):
        return _from_pandas(keys, bytes_repr)
    if type(keys) is tuple or type(keys) is list:
        seq = keys            # read in place; the kernel references each chunk's keys
    else:
        try:
            # Iterating (not a raw buffer) gives subclasses their own item semantics.
            seq = tuple(keys)
        except TypeError:
            raise TypeError(f"keys must be an iterable of keys, not {type(keys).__name__}") from None
    return [KeyBatch(_ring.KIND_SEQ, seq, len(seq), bytes_repr=bytes_repr)]


def _from_numpy(a: np.ndarray, bytes_repr: bool) -> KeyBatch:
    if a.ndim != 1:
        raise ValueError(f"keys must be a 1-dimensional array, got shape {a.shape}")
    kind = a.dtype.kind
    if kind == "S" and not bytes_repr:
        a = np.ascontiguousarray(a)
        return KeyBatch(_ring.KIND_FIXED, a.view(np.uint8), len(a), a.itemsize)
    if kind == "U":
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        a = np.ascontiguousarray(a)
        return KeyBatch(_ring.KIND_UCS4, a.view(np.uint32), len(a), a.itemsize // 4,
                        bytes_repr=bytes_repr)
    if kind in "iu":
        # The int key rule: decimal digits, which numpy's 'S' cast produces.
        d = a.astype("S")
        return KeyBatch(_ring.KIND_FIXED, d.view(np.uint8), len(d), d.itemsize)
    if kind in "OST":
        seq = tuple(a.tolist())
        return KeyBatch(_ring.KIND_SEQ, seq, len(seq), bytes_repr=bytes_repr)
    raise TypeError(
        f"keys: unsupported array dtype {a.dtype}; use str ('U'), bytes ('S'), object or integer "
        f"arrays (pre-hashed uint64 values go to lookup_hashes)"
    )


def _from_arrow(arr, bytes_repr: bool, base: int) -> list[KeyBatch]:
    """Arrow arrays; ``base`` is the index of the first key in the caller's whole batch."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        out = []
        for chunk in arr.chunks:
            out.extend(_from_arrow(chunk, bytes_repr, base))
            base += len(chunk)
        return out
    if not isinstance(arr, pa.Array):
        raise TypeError(f"keys: unsupported pyarrow object {type(arr).__name__}")
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if getattr(pa.types, "is_string_view", lambda _: False)(t):
        arr = arr.cast(pa.large_string())
    elif getattr(pa.types, "is_binary_view", lambda _: False)(t):
        arr = arr.cast(pa.large_binary())
    t = arr.type
    is_text = pa.types.is_string(t) or pa.types.is_large_string(t)
    is_binary = pa.types.is_binary(t) or pa.types.is_large_binary(t)
    if not (is_text or is_binary):
        raise TypeError(f"keys: unsupported Arrow type {t}; use string or binary arrays")
    if arr.null_count:
        first = arr.is_null().index(True).as_py()
        raise TypeError(f"keys[{base + first}]: key must not be None (the Arrow array has {arr.null_count} nulls)")
    if is_binary and bytes_repr:
        seq = tuple(arr.to_pylist())
        return [KeyBatch(_ring.KIND_SEQ, seq, len(seq), bytes_repr=True, base=base)]
    large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    bufs = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)[arr.offset:arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(1, np.uint8)
    if n == 0:
        offsets = np.zeros(1, dtype=offsets.dtype)
    kind = _ring.KIND_OFF64 if large else _ring.KIND_OFF32
    return [KeyBatch(kind, data, n, 0, np.ascontiguousarray(offsets), bytes_repr=bytes_repr, base=base)]


def _from_pandas(obj, bytes_repr: bool) -> list[KeyBatch]:
    """pandas Series, Index and ExtensionArrays: Arrow-backed text without a Python loop."""
    import pandas as pd

    values = obj.array if isinstance(obj, (pd.Series, pd.Index)) else obj
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        raise TypeError(f"keys: unsupported pandas object {type(obj).__name__}")
    missing = np.asarray(pd.isna(values))
    if missing.ndim == 1 and missing.any():
        raise TypeError(f"keys[{int(np.flatnonzero(missing)[0])}]: key must not be None/NA")
    if isinstance(values, np.ndarray):
        return [_from_numpy(values, bytes_repr)]
    text = isinstance(dtype, pd.StringDtype)
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        t = dtype.pyarrow_dtype
        text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
            or pa.types.is_large_binary(t)
    if text:
        try:
            import pyarrow as pa
        except ImportError:
            pass
        else:
            return _from_arrow(pa.array(values), bytes_repr, 0)
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if numpy_dtype is not None and numpy_dtype.kind in "iu":
        return [_from_numpy(values.to_numpy(dtype=numpy_dtype), bytes_repr)]
    return [_from_numpy(np.asarray(values, dtype=object), bytes_repr)]
