"""hashring: a compiled consistent hash ring for Python.

Which node owns this key, and which nodes back it up? ``HashRing`` answers for one key
or millions at once (lists, numpy and Arrow arrays), with the GIL released, and keeps
answering while nodes are added and removed.
"""

from ._ring import EmptyRingError
from ._version import __version__
from .failover import (
    ControllerStatus,
    FailoverController,
    FailoverEvent,
    MemoryStore,
    NodeState,
    NodeStatus,
    PartitionState,
    PartitionStatus,
    PhiAccrual,
    Position,
    Promotion,
    Route,
    Routes,
    StaleEpochError,
    Store,
    StoreEntry,
    decide_promotions,
)
from .keys import hash64, hash64_many
from .log import (
    BufferClosed,
    BufferFull,
    CorruptEntry,
    EntryBatch,
    LogBuffer,
    LogBufferError,
    LogReader,
    NotEnoughInSync,
    ReaderInfo,
    ReaderLagged,
    SegmentError,
    StaleEpoch,
    WriterAlive,
)
from .ring import DEFAULT_VNODES, MAX_POINTS, HashRing, RingSnapshot

__all__ = [
    "HashRing",
    "RingSnapshot",
    "EmptyRingError",
    "hash64",
    "hash64_many",
    "DEFAULT_VNODES",
    "MAX_POINTS",
    "LogBuffer",
    "LogReader",
    "EntryBatch",
    "ReaderInfo",
    "LogBufferError",
    "BufferFull",
    "NotEnoughInSync",
    "ReaderLagged",
    "StaleEpoch",
    "WriterAlive",
    "BufferClosed",
    "SegmentError",
    "CorruptEntry",
    "PhiAccrual",
    "MemoryStore",
    "StoreEntry",
    "NodeState",
    "PartitionState",
    "Promotion",
    "decide_promotions",
    "FailoverController",
    "FailoverEvent",
    "Position",
    "Route",
    "Routes",
    "NodeStatus",
    "PartitionStatus",
    "ControllerStatus",
    "StaleEpochError",
    "Store",
    "__version__",
]
