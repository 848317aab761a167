"""Consumer processes for the log buffer benchmarks (importable by spawned children)."""

from hashring import LogBuffer


def hashring_consumer(name, ready):
    """Read and acknowledge everything until the buffer is closed by the writer."""
    buf = LogBuffer.attach(name)
    reader = buf.reader("bench")
    ready.set()
    try:
        while True:
            batch = reader.read_batch(65536, timeout=0.5)
            if len(batch):
                reader.ack(batch.last_seq)
            elif buf.last_seq == 2**63:         # never: the parent terminates us
                break
    finally:
        buf.close()


def pipe_consumer(conn, ready):
    """Receive messages; answer b"done" after each round's end marker."""
    ready.set()
    recv, send = conn.recv_bytes, conn.send_bytes
    while True:
        msg = recv()
        if msg == b"END":
            send(b"done")
        elif msg == b"QUIT":
            return


def queue_consumer(q, done, ready):
    ready.set()
    get = q.get
    while True:
        msg = get()
        if msg == b"END":
            done.put(b"done")
        elif msg == b"QUIT":
            return
