"""The embedded membership store: revisions, compare-and-set and leases."""

import threading

import pytest

from hashring import MemoryStore, StoreEntry


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_revisions_and_compare_and_set():
    store = MemoryStore()
    assert store.revision == 0 and store.get("a") is None
    r1 = store.put("a", b"1", expect=0)              # create only if absent
    assert r1 == 1 and store.get("a") == StoreEntry(b"1", 1, None)
    assert store.put("a", b"x", expect=0) is None   # exists now: refused, unchanged
    assert store.put("a", b"2", expect=7) is None
    assert store.get("a").value == b"1" and store.revision == 1
    r2 = store.put("a", b"2", expect=r1)
    assert r2 == 2 and store.get("a") == StoreEntry(b"2", 2, None)
    store.put("b", b"3")                             # unconditional
    assert store.delete("a", expect=r1) is False and store.get("a") is not None
    assert store.delete("a", expect=r2) is True and store.get("a") is None
    assert store.delete("a") is False
    assert store.revision == 4
    assert store.items() == [("b", StoreEntry(b"3", 3, None))]


def test_items_by_prefix():
    store = MemoryStore()
    for key in ("p/2", "p/1", "q/1"):
        store.put(key, key.encode())
    assert [k for k, _ in store.items("p/")] == ["p/1", "p/2"]
    assert [k for k, _ in store.items()] == ["p/1", "p/2", "q/1"]


def test_leases_expire_and_take_their_keys():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    lease = store.grant_lease(5.0)
    store.put("leader", b"node-a", expect=0, lease=lease)
    store.put("other", b"x", lease=lease)
    store.put("keep", b"y")
    clock.now += 4.0
    assert store.keep_alive(lease) is True            # deadline now +5 from here
    clock.now += 4.9
    assert store.get("leader").value == b"node-a"
    before = store.revision
    clock.now += 0.2
    assert store.get("leader") is None and store.get("other") is None
    assert store.get("keep") is not None
    assert store.revision == before + 1               # one change for the lease's keys
    assert store.keep_alive(lease) is False
    with pytest.raises(KeyError, match="lease"):
        store.put("leader", b"node-b", lease=lease)
    assert store.put("leader", b"node-b", expect=0) is not None   # the seat is free


def test_revoke_and_rebinding_a_key():
    store = MemoryStore(clock=FakeClock())
    first, second = store.grant_lease(10), store.grant_lease(10)
    store.put("k", b"1", lease=first)
    store.put("k", b"2", lease=second)                # now bound to the second lease only
    store.revoke(first)
    assert store.get("k").value == b"2"
    store.revoke(second)
    store.revoke(second)                              # ending an ended lease is no error
    assert store.get("k") is None


def test_concurrent_compare_and_set_loses_no_update():
    store = MemoryStore()
    store.put("counter", b"0")

    def bump(times):
        for _ in range(times):
            while True:
                entry = store.get("counter")
                if store.put("counter", str(int(entry.value) + 1).encode(), expect=entry.revision):
                    break

    threads = [threading.Thread(target=bump, args=(2000,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("counter").value == b"8000"


@pytest.mark.parametrize("call, exc, word", [
    (lambda s: s.put(1, b"x"), TypeError, "key"),
    (lambda s: s.put("", b"x"), ValueError, "key"),
    (lambda s: s.put("k", "text"), TypeError, "value"),
    (lambda s: s.put("k", b"x", expect=-1), ValueError, "expect"),
    (lambda s: s.put("k", b"x", expect=True), TypeError, "expect"),
    (lambda s: s.put("k", b"x", lease=0), ValueError, "lease"),
    (lambda s: s.put("k", b"x", lease=99), KeyError, "lease"),
    (lambda s: s.delete(None), TypeError, "key"),
    (lambda s: s.grant_lease(0), ValueError, "ttl"),
    (lambda s: s.grant_lease(float("inf")), ValueError, "ttl"),
    (lambda s: s.keep_alive("1"), TypeError, "lease"),
    (lambda s: s.items(3), TypeError, "prefix"),
])
def test_bad_input_names_the_argument_and_changes_nothing(call, exc, word):
    store = MemoryStore()
    store.put("k", b"v")
    with pytest.raises(exc, match=word):
        call(store)
    assert store.revision == 1 and store.items() == [("k", StoreEntry(b"v", 1, None))]


def test_clock_must_be_callable():
    with pytest.raises(TypeError, match="clock"):
        MemoryStore(clock=5)
