"""Child-process roles for tests/test_log_processes.py.

Each role runs in a fresh interpreter started as

    python -c "import _log_proc_helpers as h; h.main()" ROLE JSON_ARGS

(tests/ and the repository root on PYTHONPATH) and attaches to the shared segment by name.
Roles report to the parent with one JSON object per stdout line ({"event": ...}); the
parent may drive them through stdin. Nothing here is inherited through fork.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
import traceback

_PATTERN = bytes((i * 167 + 13) & 0xFF for i in range(8192))


def payload(seq: int, max_len: int = 300) -> bytes:
    """The entry for seq: its length (0..max_len + 8) and bytes depend on seq only."""
    if seq % 23 == 0:
        return b""
    n = ((seq * 2654435761) >> 9) % (max_len + 1)
    off = (seq * 7919) % 4096
    return seq.to_bytes(8, "little") + _PATTERN[off:off + n]


def frame_size(n: int) -> int:
    """Bytes a payload of n bytes takes in the ring (32-byte header, 32-byte alignment)."""
    return (32 + n + 31) & ~31


def emit(event: str, **fields) -> None:
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------------------ streaming roles

def stream_writer(name, capacity, n, readers, max_len=300, batch=64, create=True):
    """Create (or take over) the buffer, wait for `readers` in-sync readers, append 1..n.

    Mixes append and append_many; reports the last seq and the commit after waiting."""
    from hashring import LogBuffer
    if create:
        buf = LogBuffer(capacity, name=name, max_lag_seconds=None)
    else:
        buf = LogBuffer.attach(name, writer=True, force=True)
    emit("ready", epoch=buf.epoch)
    deadline = time.monotonic() + 30
    while sum(r.in_sync for r in buf.readers()) < readers:
        if time.monotonic() > deadline:
            emit("error", message="readers did not join")
            return 1
        time.sleep(0.005)
    rnd = random.Random(n)
    seq = buf.last_seq + 1
    t0 = time.monotonic()
    while seq <= n:
        if rnd.random() < 0.2:
            got = buf.append(payload(seq, max_len), timeout=20)
            if got != seq:
                emit("error", message=f"append returned {got}, expected {seq}")
                return 1
            seq += 1
        else:
            k = min(rnd.randint(1, batch), n - seq + 1)
            last = buf.append_many([payload(s, max_len) for s in range(seq, seq + k)], timeout=20)
            if last != seq + k - 1:
                emit("error", message=f"append_many returned {last}, expected {seq + k - 1}")
                return 1
            seq += k
    appended = time.monotonic() - t0
    ok = buf.wait_committed(n, timeout=30)
    emit("done", last_seq=buf.last_seq, commit_seq=buf.commit_seq, committed=ok,
         seconds=appended, total_seconds=time.monotonic() - t0, epoch=buf.epoch)
    buf.close()
    return 0


def _check_entries(entries, expected, max_len, errors):
    """Check (seq, data) pairs against payload(); returns the next expected seq."""
    for seq, data in entries:
        if expected is not None and seq != expected:
            errors.append(f"seq {seq} delivered, expected {expected}")
        if data != payload(seq, max_len):
            errors.append(f"seq {seq}: wrong content ({len(data)} bytes)")
        expected = seq + 1
    return expected


def stream_reader(name, reader_name, n, max_len=300, start="earliest", zero_copy=False,
                  timeout=None, stop_file=None, rejoin=False):
    """Join, then read and check every entry until seq n (or the seq in stop_file) is seen.

    Every delivered seq must be the previous one + 1 and carry payload(seq). With
    rejoin=True a ReaderLagged is recorded and followed by rejoin(); otherwise it is an
    error. Reports counts, the first and last seq, errors and CPU seconds."""
    from hashring import LogBuffer, ReaderLagged
    buf = LogBuffer.attach(name)
    r = buf.reader(reader_name, start=start)
    emit("joined", pid=os.getpid(), slot=r._core.slot)
    errors: list[str] = []
    expected = 1 if start == "earliest" and buf.last_seq == 0 else None
    count = 0
    first = last = None
    lagged = 0
    target = n
    deadline = time.monotonic() + 120
    t0 = time.monotonic()
    cpu0 = cpu_seconds()
    while target is None or last is None or last < target:
        if time.monotonic() > deadline:
            errors.append(f"timed out at seq {last} (target {target})")
            break
        if stop_file is not None and target is None and os.path.exists(stop_file):
            with open(stop_file) as f:
                text = f.read().strip()
            if text:
                target = int(text)
                continue
        try:
            if zero_copy:
                batch = r.read_batch(max_entries=2048, timeout=0.2 if timeout is None else timeout)
                entries = [(s, bytes(v)) for s, v in batch]
            else:
                entries = r.read(max_entries=2048, timeout=0.2 if timeout is None else timeout)
        except ReaderLagged as exc:
            if not rejoin:
                errors.append(f"ReaderLagged: {exc}")
                break
            lagged += 1
            emit("lagged", after=last)
            r.rejoin("tail")
            expected = None
            continue
        if not entries:
            continue
        if first is None:
            first = entries[0][0]
        count += len(entries)
        expected = _check_entries(entries, expected, max_len, errors)
        last = entries[-1][0]
        r.ack(last)
        if len(errors) > 20:
            break
    emit("done", count=count, first=first, last=last, errors=errors[:20], lagged=lagged,
         seconds=time.monotonic() - t0, cpu=cpu_seconds() - cpu0, commit_seq=buf.commit_seq)
    r.close()
    buf.close()
    return 0


def crash_writer(name, seed, max_len=300):
    """Wait for "go" on stdin, take over as writer, append payload(seq) until killed."""
    from hashring import LogBuffer
    line = sys.stdin.readline()
    if line.strip() != "go":
        return 0
    buf = LogBuffer.attach(name, writer=True, force=True)
    last = buf.last_seq
    emit("attached", epoch=buf.epoch, last_seq=last, pid=os.getpid())
    rnd = random.Random(seed)
    seq = last + 1
    got = buf.append(payload(seq, max_len), timeout=20)
    emit("first", seq=got)
    seq = got + 1
    while True:
        x = rnd.random()
        if x < 0.3:
            seq = buf.append(payload(seq, max_len), timeout=20) + 1
        else:
            k = rnd.randint(1, 400 if x < 0.9 else 3000)
            items = [payload(s, max_len) for s in range(seq, seq + k)]
            seq = buf.append_many(items, timeout=20) + 1


def rate_writer(name, n, readers, size=64):
    """Blocking single appends of size-byte entries; report entries per second end to end."""
    from hashring import LogBuffer
    buf = LogBuffer.attach(name, writer=True, force=True)
    emit("ready", epoch=buf.epoch)
    deadline = time.monotonic() + 30
    while sum(r.in_sync for r in buf.readers()) < readers:
        if time.monotonic() > deadline:
            emit("error", message="readers did not join")
            return 1
        time.sleep(0.005)
    base = buf.last_seq
    data = [bytes([i & 0xFF]) * size for i in range(256)]
    t0 = time.monotonic()
    cpu0 = cpu_seconds()
    for i in range(1, n + 1):
        buf.append(data[(base + i) & 0xFF], timeout=None)
    ok = buf.wait_committed(base + n, timeout=60)
    elapsed = time.monotonic() - t0
    emit("done", committed=ok, seconds=elapsed, rate=n / elapsed, cpu=cpu_seconds() - cpu0,
         last_seq=buf.last_seq)
    buf.close()
    return 0


def rate_reader(name, reader_name, first, last, size=64):
    """Blocking reads until `last`; checks seq order and the byte pattern of rate_writer."""
    from hashring import LogBuffer
    buf = LogBuffer.attach(name)
    r = buf.reader(reader_name, start="tail")
    emit("joined", pid=os.getpid())
    expected = first
    errors = []
    t0 = time.monotonic()
    cpu0 = cpu_seconds()
    while expected <= last:
        entries = r.read(max_entries=4096, timeout=10.0)
        if not entries:
            errors.append(f"no entry for 10 s at seq {expected}")
            break
        for seq, data in entries:
            if seq != expected or data != bytes([seq & 0xFF]) * size:
                errors.append(f"seq {seq} (expected {expected}) has wrong content")
            expected = seq + 1
        r.ack(entries[-1][0])
        if len(errors) > 10:
            break
    emit("done", seconds=time.monotonic() - t0, cpu=cpu_seconds() - cpu0, errors=errors)
    r.close()
    buf.close()
    return 0


def idle_waits(name, reader_name, wait=1.0):
    """CPU time of a reader waiting `wait` s for entries that never come, and of the same
    process as a writer-side waiter (wait_committed) that never succeeds."""
    from hashring import LogBuffer
    buf = LogBuffer.attach(name)
    r = buf.reader(reader_name, start="tail")
    emit("joined", pid=os.getpid())
    t0, c0, o0 = time.monotonic(), cpu_seconds(), os.times()
    got = r.read(timeout=wait)
    t1, c1, o1 = time.monotonic(), cpu_seconds(), os.times()
    emit("done", entries=len(got), wall=t1 - t0, cpu=c1 - c0,
         times_cpu=(o1.user + o1.system) - (o0.user + o0.system))
    r.close()
    buf.close()
    return 0


# ------------------------------------------------------------------ the agent

_AGENT_STATE: dict = {"readers": {}, "handles": []}


def agent():
    """Execute one JSON command per stdin line and answer with one JSON line each.

    Commands: create, attach, append, append_many, reader, read, read_batch, ack, info,
    close, close_reader, drop_reader (forget a reader without closing it), sweep, sleep,
    exit (a normal exit without closing anything: the finalizers run at exit)."""
    import gc

    from hashring import LogBuffer, log as logmod
    buf = None
    # Module-level, so that "exit" leaves every handle and reader alive until the
    # interpreter's exit handlers (the buffers' finalizers) run.
    readers = _AGENT_STATE["readers"]
    handles = _AGENT_STATE["handles"]
    emit("hello", pid=os.getpid())
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            if op == "create":
                buf = LogBuffer(cmd.pop("capacity", 65536), name=cmd.pop("name"), **cmd)
                handles.append(buf)
                result = {"epoch": buf.epoch}
            elif op == "attach":
                times = cmd.pop("handles", 1)
                for _ in range(times):
                    buf = LogBuffer.attach(cmd["name"], writer=cmd.get("writer", False),
                                           epoch=cmd.get("epoch"), force=cmd.get("force", True))
                    handles.append(buf)
                result = {"epoch": buf.epoch, "last_seq": buf.last_seq, "is_writer": buf.is_writer}
            elif op == "append":
                result = {"seq": buf.append(bytes.fromhex(cmd["data"]), timeout=cmd.get("timeout", 5))}
            elif op == "append_many":
                items = [bytes.fromhex(d) for d in cmd["items"]]
                result = {"seq": buf.append_many(items, timeout=cmd.get("timeout", 5))}
            elif op == "reader":
                readers[cmd["name"]] = buf.reader(cmd["name"], start=cmd.get("start", "tail"))
                result = {"slot": readers[cmd["name"]]._core.slot}
            elif op == "read":
                got = readers[cmd["name"]].read(max_entries=cmd.get("max", 1024), timeout=cmd.get("timeout", 0))
                result = {"entries": [[s, d.hex()] for s, d in got]}
            elif op == "read_batch":
                batch = readers[cmd["name"]].read_batch(max_entries=cmd.get("max", 1024),
                                                        timeout=cmd.get("timeout", 0))
                out = []
                for i in range(len(batch)):
                    start = int(batch.starts[i])
                    # the frame header sits right before the payload: epoch at offset 16
                    epoch = int.from_bytes(bytes(batch._data[start - 16:start - 8]), "little")
                    out.append([int(batch.seqs[i]), bytes(batch[i]).hex(), epoch])
                result = {"entries": out}
            elif op == "ack":
                readers[cmd["name"]].ack(cmd["seq"])
                result = {}
            elif op == "info":
                result = {"epoch": buf.epoch, "last_seq": buf.last_seq, "commit_seq": buf.commit_seq,
                          "readers": [vars(i) for i in buf.readers()]}
            elif op == "close_reader":
                readers.pop(cmd["name"]).close()
                result = {}
            elif op == "drop_reader":             # forget it without close()
                del readers[cmd["name"]]
                gc.collect()
                result = {}
            elif op == "close":
                for h in handles:
                    h.close()
                result = {}
            elif op == "sleep":
                time.sleep(cmd["seconds"])
                result = {}
            elif op == "sweep":
                result = {"removed": logmod.sweep_stale_segments()}
            elif op == "exit":
                emit("result", op=op)
                return 0
            else:
                raise ValueError(f"unknown op {op!r}")
            emit("result", op=op, **result)
        except Exception as exc:  # reported to the parent, which decides
            emit("result", op=op, error=type(exc).__name__, message=str(exc))
    return 0


ROLES = {
    "stream_writer": stream_writer,
    "stream_reader": stream_reader,
    "crash_writer": crash_writer,
    "rate_writer": rate_writer,
    "rate_reader": rate_reader,
    "idle_waits": idle_waits,
    "agent": agent,
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    role = argv[0]
    kwargs = json.loads(argv[1]) if len(argv) > 1 else {}
    try:
        code = ROLES[role](**kwargs)
    except Exception:
        emit("crash", traceback=traceback.format_exc())
        code = 3
    sys.stdout.flush()
    sys.exit(code or 0)
