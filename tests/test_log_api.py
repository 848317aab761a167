"""Log buffer API details: writer lock, fast paths, lifecycle."""

import os
import uuid

import pytest

from hashring import LogBuffer, StaleEpoch, WriterAlive


def test_live_writer_blocks_takeover_without_force():
    name = f"api-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with LogBuffer(1 << 16, name=name, min_in_sync=0) as primary:
        assert primary.append(b"one") == 1
        with pytest.raises(WriterAlive, match="is alive .*force=True"):
            LogBuffer.attach(name, writer=True)
        assert primary.epoch == 1 and primary.append(b"two") == 2     # nothing changed
        successor = LogBuffer.attach(name, writer=True, force=True)
        assert successor.epoch == 2
        with pytest.raises(StaleEpoch, match="superseded by epoch 2"):
            primary.append(b"three")
        assert successor.append(b"three") == 3
        successor.close()
    assert not os.path.exists(f"/dev/shm/hashring-log-{name}")


def test_closed_writer_releases_the_lock():
    name = f"api-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    primary = LogBuffer(1 << 16, name=name, min_in_sync=0)
    watcher = LogBuffer.attach(name)
    primary.append(b"x")
    primary.close()
    successor = LogBuffer.attach(name, writer=True)        # no force needed now
    assert successor.epoch == 2 and successor.append(b"y") == 2
    successor.close()
    watcher.close()
    assert not os.path.exists(f"/dev/shm/hashring-log-{name}")
