"""FailoverController on a fake clock: detection, promotion, in-sync sets, fail-back,
fencing, the store, routes, bad input, and real threads."""

import logging
import threading
import time

import numpy as np
import pytest
import xxhash

from hashring import (
    FailoverController,
    HashRing,
    MemoryStore,
    NodeState,
    PhiAccrual,
    Position,
    StaleEpochError,
)

NODES = ["a", "b", "c", "d"]


class Cluster:
    """A fake clock, a controller, and well-behaved nodes that report positions.

    Every live node heartbeats every ``interval``; a primary appends ``writes`` entries
    per beat and commits what its in-sync backups hold; a backup holds everything unless
    ``lagging``.
    """

    def __init__(self, nodes=NODES, partitions=16, interval=0.1, writes=5, **kw):
        self.now = 0.0
        kw.setdefault("hold_down", 1.0)
        self.ring = HashRing(nodes)
        self.store = kw.pop("store", None) or MemoryStore(clock=lambda: self.now)
        min_in_sync = kw.pop("min_in_sync", 2)
        self.ctl = FailoverController(self.ring, 3, min_in_sync, partitions=partitions, clock=lambda: self.now,
                                      store=self.store, **kw)
        self.interval = interval
        self.writes = writes
        self.alive = set(nodes)
        self.lagging = set()
        self.confirm = True            # primaries report the record revision they apply
        self.tail = [0] * partitions
        self.held = {}                 # (node, p) -> seq held
        self.events = []
        self.ctl.on_event(self.events.append)      # also the events heartbeats cause

    def beat(self, node):
        ctl = self.ctl
        positions = {}
        for p in range(ctl.partitions):
            part = ctl.partition(p)
            if node not in part.replicas:
                continue
            if node == part.primary:
                self.tail[p] += self.writes
                # The contract: commit what every in-sync replica holds.
                commit = min([self.tail[p]] + [self.held.get((n, p), 0) for n in part.in_sync if n != node])
                positions[p] = Position(part.epoch, self.tail[p], commit, part.revision if self.confirm else 0)
            elif node not in self.lagging:
                self.held[node, p] = self.tail[p]
                positions[p] = Position(part.epoch, self.tail[p])
            else:
                positions[p] = Position(part.epoch, self.held.get((node, p), 0))
        ctl.heartbeat(node, positions, self.now)

    def run(self, seconds, alive=None):
        if alive is not None:
            self.alive = set(alive)
        for _ in range(round(seconds / self.interval)):
            self.now = round(self.now + self.interval, 9)
            for node in sorted(self.alive):
                self.beat(node)
            self.ctl.tick(self.now)

    def kinds(self, kind):
        return [e for e in self.events if e.kind == kind]

    def primaries(self):
        return [self.ctl.partition(p).primary for p in range(self.ctl.partitions)]


# --- placement and routes --------------------------------------------------------------

def test_partitions_follow_the_rings_preference_lists():
    c = Cluster(partitions=32)
    for p in range(32):
        part = c.ctl.partition(p)
        assert part.replicas == tuple(c.ring.get_nodes(f"partition-{p}", 3))
        assert part.primary == part.replicas[0] and part.epoch == 1
        assert part.in_sync == frozenset(part.replicas)


@pytest.mark.parametrize("partitions", [1, 7, 256, 16384])
def test_partition_of_a_key_is_the_top_of_its_xxh3(partitions):
    ctl = FailoverController(HashRing(NODES), 3, 2, partitions=partitions)
    rng = np.random.default_rng(partitions)
    keys = [bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(0, 40, 2000)]
    want = [((xxhash.xxh3_64_intdigest(k) >> 32) * partitions) >> 32 for k in keys]
    assert [ctl.partition_of(k) for k in keys] == want
    routes = ctl.route_many(keys)
    assert routes.partition.tolist() == want


def test_route_many_agrees_with_route_for_every_door():
    c = Cluster(partitions=64)
    c.run(1.0)
    c.run(1.5, alive="bcd")                           # some partitions fail over
    assert c.kinds("failover")
    keys = [f"key-{i}" for i in range(5000)]
    pa = pytest.importorskip("pyarrow")
    for batch in (keys, np.array(keys), np.array(keys, dtype="S"), [k.encode() for k in keys],
                  pa.array(keys), pa.chunked_array([keys[:1234], keys[1234:]])):
        routes = c.ctl.route_many(batch)
        for i in range(0, 5000, 97):
            r = c.ctl.route(keys[i])
            assert routes.partition[i] == r.partition and routes.epoch[i] == r.epoch
            assert routes.nodes[routes.primary[i]] == r.primary
    assert routes.primary.dtype == np.int32 and routes.epoch.dtype == np.int64


def test_route_lists_live_backups_in_preference_order():
    c = Cluster()
    c.run(1.0)
    key = next(k for k in (f"k{i}" for i in range(1000)) if c.ctl.route(k).primary == "a")
    r = c.ctl.route(key)
    assert r.backups == tuple(n for n in c.ctl.partition(r.partition).replicas if n != "a")
    c.run(1.5, alive="bcd")
    r2 = c.ctl.route(key)
    assert r2.primary in r.backups and r2.epoch == r.epoch + 1 and "a" not in r2.backups


# --- detection and promotion -----------------------------------------------------------

def test_dead_primary_is_replaced_by_the_most_up_to_date_in_sync_backup():
    c = Cluster()
    c.run(2.0)
    led_by_a = [p for p, n in enumerate(c.primaries()) if n == "a"]
    assert led_by_a
    last_heartbeat = c.now
    c.run(1.5, alive="bcd")
    (down,) = c.kinds("node_down")
    assert down.node == "a" and 0.5 <= down.time - last_heartbeat <= 0.8     # phi 8 at 100 ms beats
    assert c.kinds("node_suspect")[0].time < down.time
    failovers = c.kinds("failover")
    assert sorted(e.partition for e in failovers) == led_by_a
    for e in failovers:
        part = c.ctl.partition(e.partition)
        assert e.old_primary == "a" and e.new_primary == part.primary == part.replicas[1]
        assert e.epoch == part.epoch == 2 and e.time == down.time
        assert "a" not in part.in_sync
    status = c.ctl.status()
    assert status.nodes["a"].state is NodeState.DOWN and status.nodes["a"].primary_of == 0
    m = status.metrics
    assert m["failovers"] == len(led_by_a) and m["unavailable_partitions"] == 0
    assert 0.5 <= m["promotion_seconds_median"] <= 0.8


def test_higher_position_wins_over_preference_order():
    c = Cluster()
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    second, third = c.ctl.partition(p).replicas[1:]
    c.lagging = {second}                  # still in sync (within max_lag) but behind
    c.run(0.3)
    c.run(1.5, alive=set(NODES) - {"a"})
    assert c.ctl.partition(p).primary == third


def test_suspect_primary_is_not_replaced():
    """Unreachable for a while (phi above the suspect level, below the threshold), with
    healthy backups: no failover."""
    c = Cluster()
    c.run(3.0)
    c.run(0.5, alive="bcd")               # phi reaches ~5 by 0.5 s of silence: suspect, not down
    c.run(1.0, alive=NODES)
    assert [e.node for e in c.kinds("node_suspect")] == ["a"]
    assert not c.kinds("node_down") and not c.kinds("failover")
    assert c.kinds("node_up")[-1].node == "a"


def test_hard_timeout_convicts_whatever_phi_says():
    c = Cluster(detector=PhiAccrual(threshold=8, min_std=5.0), hard_timeout=1.5)
    c.run(1.0)
    c.run(2.0, alive="bcd")
    (down,) = c.kinds("node_down")
    assert "hard_timeout" in down.reason and down.time == pytest.approx(1.0 + 1.5, abs=0.11)


def test_node_never_heard_from_is_down_after_hard_timeout():
    c = Cluster(hard_timeout=2.0)
    c.run(3.0, alive="abc")
    (down,) = c.kinds("node_down")
    assert down.node == "d" and down.time == pytest.approx(2.0, abs=0.11)


def test_lagging_backups_leave_the_in_sync_set_down_to_min_in_sync_only():
    """Below min_in_sync commits stop anyway, so the last backups that may take over stay."""
    c = Cluster(max_lag=0.5)
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    c.lagging = set(c.ctl.partition(p).replicas[1:])
    c.run(1.5)
    assert len(c.ctl.partition(p).in_sync) == 2
    c.run(1.5, alive="bcd")
    assert c.ctl.partition(p).primary in c.lagging


def lose_a_partition(**kw):
    """min_in_sync=1: a partition's backups lag out of its in-sync set, then its primary
    "a" dies. Returns the cluster and the partition (unavailable now)."""
    c = Cluster(max_lag=0.5, min_in_sync=1, **kw)
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    c.lagging = set(c.ctl.partition(p).replicas[1:])
    c.run(1.5)
    assert c.ctl.partition(p).in_sync == {"a"}
    assert {e.node for e in c.kinds("isr_shrink") if e.partition == p} == c.lagging
    c.run(1.5, alive="bcd")
    return c, p


def test_all_backups_lagging_makes_the_partition_unavailable_not_silently_served():
    c, p = lose_a_partition()
    (e,) = [e for e in c.kinds("unavailable") if e.partition == p]
    assert e.old_primary == "a" and c.ctl.partition(p).primary is None
    key = next(k for k in (f"k{i}" for i in range(10000)) if c.ctl.partition_of(k) == p)
    assert c.ctl.route(key).primary is None and not c.ctl.writable(p)
    assert c.ctl.route_many([key]).primary[0] == -1
    assert c.ctl.status().metrics["unavailable_partitions"] >= 1
    # The in-sync one comes back: it takes the partition again, once trusted.
    c.run(2.0, alive=NODES)
    part = c.ctl.partition(p)
    assert part.primary == "a" and part.epoch == e.epoch + 1


def test_unclean_promotion_when_allowed():
    c, p = lose_a_partition(unclean=True)
    (e,) = [e for e in c.kinds("failover") if e.partition == p]
    assert "unclean" in e.reason and c.ctl.status().metrics["unclean_failovers"] >= 1
    assert c.ctl.partition(p).in_sync == {e.new_primary}


# --- flapping, hold-down, rejoin, fail-back -------------------------------------------------

def test_flapping_node_is_held_down_and_fails_back_only_once_stable():
    c = Cluster(hold_down=3.0)
    c.run(2.0)
    led_by_a = {p for p, n in enumerate(c.primaries()) if n == "a"}
    c.run(1.5, alive="bcd")
    epochs = [c.ctl.partition(p).epoch for p in range(c.ctl.partitions)]
    for _ in range(4):                               # flap: back 0.5 s, silent 1.5 s
        c.run(0.5, alive=NODES)
        c.run(1.5, alive="bcd")
    assert len(c.kinds("node_down")) == 5 and len(c.kinds("node_up")) == 4
    # No fail-back and no re-entry into an in-sync set while it flaps.
    assert [c.ctl.partition(p).epoch for p in range(c.ctl.partitions)] == epochs
    assert not [e for e in c.kinds("isr_expand") if e.node == "a"]
    assert not c.kinds("fail_back") and not c.kinds("node_trusted")
    # Stable again: trusted after hold_down, back in sync, then the preferred primary returns.
    c.run(5.0, alive=NODES)
    (trusted,) = c.kinds("node_trusted")
    assert trusted.node == "a"
    fail_backs = c.kinds("fail_back")
    assert {e.partition for e in fail_backs} == led_by_a
    assert all(e.time >= trusted.time and e.new_primary == "a" for e in fail_backs)
    assert all(c.ctl.partition(p).primary == "a" for p in led_by_a)
    assert c.ctl.status().metrics["fail_backs"] == len(led_by_a)


def test_fail_back_can_be_turned_off():
    c = Cluster(fail_back=False)
    c.run(1.0)
    c.run(1.5, alive="bcd")
    c.run(5.0, alive=NODES)
    assert c.kinds("failover") and not c.kinds("fail_back")
    assert {e.partition for e in c.kinds("isr_expand") if e.node == "a"} == \
        {p for p in range(c.ctl.partitions) if "a" in c.ctl.partition(p).replicas and c.ctl.partition(p).primary != "a"}


def test_unconfirmed_in_sync_addition_is_no_candidate():
    """The primary has not reported applying the record that re-added a backup: it may
    have committed entries without it, so that backup must not take over."""
    c = Cluster(hold_down=0.5, fail_back=False)
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "b" and c.ctl.partition(p).replicas[1] == "a"
             or n == "b" and "a" in c.ctl.partition(p).replicas)
    c.run(1.5, alive="bcd")                          # a is down and leaves p's in-sync set
    assert "a" not in c.ctl.partition(p).in_sync
    c.confirm = False
    c.run(2.0, alive=NODES)                          # a catches up and is re-added, unconfirmed
    (add,) = [e for e in c.kinds("isr_expand") if e.partition == p and e.node == "a"]
    assert "a" in c.ctl.partition(p).in_sync and add.revision == c.ctl.revision(p)
    third = next(n for n in c.ctl.partition(p).replicas if n not in ("a", "b"))
    c.lagging = {third}
    c.run(1.5, alive=set(NODES) - {"b", third})      # primary b dies; third silent too
    part = c.ctl.partition(p)
    assert part.primary != "a"


def test_confirmed_addition_is_a_candidate():
    c = Cluster(hold_down=0.5, fail_back=False)
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "b" and "a" in c.ctl.partition(p).replicas)
    c.run(1.5, alive="bcd")
    c.run(2.0, alive=NODES)                          # re-added and confirmed by b's reports
    assert "a" in c.ctl.partition(p).in_sync
    third = next(n for n in c.ctl.partition(p).replicas if n not in ("a", "b"))
    c.run(1.5, alive=set(NODES) - {"b", third})
    assert c.ctl.partition(p).primary == "a"


def test_restarted_backup_leaves_the_in_sync_set_at_once():
    c = Cluster()
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    backup = c.ctl.partition(p).replicas[1]
    c.ctl.heartbeat(backup, {p: (c.ctl.partition(p).epoch, 0)}, c.now)     # it lost its memory
    (e,) = [e for e in c.events if e.kind == "isr_shrink" and e.partition == p]
    assert e.node == backup and "went back" in e.reason
    assert backup not in c.ctl.partition(p).in_sync


# --- fencing ------------------------------------------------------------------------------

def test_stale_positions_are_refused_and_reported_once():
    c = Cluster()
    c.run(1.0)
    c.run(1.5, alive="bcd")
    e = c.kinds("failover")[0]
    p = e.partition
    before = c.ctl.status().metrics["stale_epoch_rejections"]
    for _ in range(3):
        c.now += 0.1
        c.ctl.heartbeat(e.new_primary, {p: Position(e.epoch - 1, 10**6, 10**6)}, c.now)
        c.ctl.tick(c.now)
    stale = [x for x in c.events if x.kind == "stale_epoch"]
    assert len(stale) == 1 and stale[0].partition == p and stale[0].epoch == e.epoch - 1
    assert c.ctl.status().metrics["stale_epoch_rejections"] == before + 3
    assert c.ctl.status().partitions[p].commit < 10**6            # the stale commit did not count


def test_check_epoch_fences_old_primaries():
    c = Cluster()
    c.run(1.0)
    c.run(1.5, alive="bcd")
    e = c.kinds("failover")[0]
    c.ctl.check_epoch(e.partition, e.epoch, e.new_primary)
    with pytest.raises(StaleEpochError, match=f"epoch {e.epoch - 1}"):
        c.ctl.check_epoch(e.partition, e.epoch - 1, "a")
    with pytest.raises(StaleEpochError, match="'a'"):
        c.ctl.check_epoch(e.partition, e.epoch, "a")


def test_at_most_one_primary_per_partition_and_epoch_over_a_long_run():
    c = Cluster(partitions=16, hold_down=0.5)
    seen = {}
    schedule = [NODES, "bcd", NODES, "acd", NODES, "abd", NODES, "abc", NODES]
    for alive in schedule:
        for _ in range(20):
            c.run(0.1, alive=alive)
            for p in range(16):
                part = c.ctl.partition(p)
                assert seen.setdefault((p, part.epoch), part.primary) == part.primary
    epochs = {}
    for e in c.events:
        if e.partition is not None and e.epoch is not None and e.kind in ("failover", "fail_back", "unavailable"):
            assert e.epoch > epochs.get(e.partition, 1)
            epochs[e.partition] = e.epoch


# --- the store --------------------------------------------------------------------------------

def test_state_lives_in_the_store_and_a_new_controller_waits_for_the_lease():
    c = Cluster()
    c.run(1.0)
    c.run(1.5, alive="bcd")
    epochs = [c.ctl.partition(p).epoch for p in range(c.ctl.partitions)]
    # The old controller stops ticking (crashed); a new one on the same store.
    ctl2 = FailoverController(c.ring, 3, 2, partitions=c.ctl.partitions, clock=lambda: c.now, store=c.store, hold_down=1.0)
    assert [ctl2.partition(p).epoch for p in range(c.ctl.partitions)] == epochs      # reloaded
    assert not ctl2.status().active
    events = []
    for _ in range(60):
        c.now += 0.1
        for node in "bcd":
            ctl2.heartbeat(node, None, c.now)
        events += ctl2.tick(c.now)
    assert [e.kind for e in events].count("controller_active") == 1
    active_at = next(e.time for e in events if e.kind == "controller_active")
    assert active_at >= 2.5 + 5.0 - 0.11                  # the old lease (hard_timeout) had to expire
    assert ctl2.status().active
    assert all(ctl2.partition(p).primary != "a" for p in range(c.ctl.partitions))


def test_conflicting_write_is_detected_and_reloaded():
    c = Cluster()
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    key = f"hashring/partition/{p}"
    entry = c.store.get(key)
    import json
    record = json.loads(entry.value)
    record["epoch"] = 7
    c.store.put(key, json.dumps(record).encode(), expect=entry.revision)   # someone else's change
    c.run(1.5, alive="bcd")
    assert c.kinds("store_conflict")
    assert c.ctl.partition(p).epoch == 8                                   # reloaded, then failed over


def test_a_paused_controller_does_not_convict_anyone():
    c = Cluster()
    c.run(1.0)
    c.now += 3.0                             # the controller (and the beats) stalled for 3 s
    for node in NODES:
        c.beat(node)
    events = c.ctl.tick(c.now)
    assert [e.kind for e in events] == ["controller_paused"]       # no conviction, no in-sync change
    c.run(1.0)
    assert not c.kinds("node_down")


# --- events, logging, status ----------------------------------------------------------------

def test_events_go_to_callbacks_and_logging_and_a_failing_callback_is_contained(caplog):
    c = Cluster()
    got = []
    c.ctl.on_event(lambda e: 1 / 0)
    c.ctl.on_event(got.append)
    with caplog.at_level(logging.INFO, logger="hashring.failover"):
        c.run(1.0)
        c.run(1.5, alive="bcd")
    assert [e.kind for e in got] == [e.kind for e in c.events]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("node_down node=a") for m in messages)
    assert any(m.startswith("failover") and "epoch=2" in m for m in messages)
    assert any("callback" in m for m in messages)                 # the ZeroDivisionError, logged
    with pytest.raises(TypeError, match="callback"):
        c.ctl.on_event(42)


def test_status_reports_lag_phi_and_partitions():
    c = Cluster(max_lag=5.0)
    c.run(1.0)
    c.lagging = {"b"}           # b leads partitions too: it lags only where it is a backup
    c.run(0.5)
    st = c.ctl.status()
    assert st.active and set(st.nodes) == set(NODES)
    assert st.nodes["b"].lag > 5 * c.writes >= st.nodes["c"].lag
    assert st.metrics["replication_lag"]["b"] == st.nodes["b"].lag
    assert all(0 <= n.phi < 1 and n.state is NodeState.UP and n.trusted for n in st.nodes.values())
    assert [ps.partition for ps in st.partitions] == list(range(c.ctl.partitions))
    assert sum(n.primary_of for n in st.nodes.values()) == c.ctl.partitions
    assert all(ps.available and ps.commit > 0 for ps in st.partitions)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(ring=["a"]), TypeError, "ring"),
    (dict(replication_factor=5), ValueError, "replication_factor"),
    (dict(replication_factor=0), ValueError, "replication_factor"),
    (dict(min_in_sync=4), ValueError, "min_in_sync"),
    (dict(partitions=0), ValueError, "partitions"),
    (dict(partitions=2.5), TypeError, "partitions"),
    (dict(detector="phi"), TypeError, "detector"),
    (dict(clock=3), TypeError, "clock"),
    (dict(suspect_phi=9), ValueError, "suspect_phi"),
    (dict(hard_timeout=-1), ValueError, "hard_timeout"),
    (dict(hold_down=float("nan")), ValueError, "hold_down"),
    (dict(max_lag=0), ValueError, "max_lag"),
    (dict(fail_back=1), TypeError, "fail_back"),
    (dict(store=object()), TypeError, "store"),
    (dict(prefix=""), ValueError, "prefix"),
])
def test_bad_settings_name_the_argument(kwargs, exc, match):
    args = dict(ring=HashRing(NODES), replication_factor=3, min_in_sync=2)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        FailoverController(**args)


def test_bad_heartbeats_change_nothing():
    c = Cluster()
    c.run(1.0)
    before = (c.ctl.status(c.now), [c.ctl.partition(p) for p in range(c.ctl.partitions)], c.ctl.detector.last_heartbeat("a"))
    p = c.primaries().index("a")
    epoch = c.ctl.partition(p).epoch
    bad = [
        (("zz", None, c.now), KeyError, "zz"),
        (("a", [1, 2], c.now), TypeError, "positions"),
        (("a", {99: (1, 1)}, c.now), ValueError, "positions"),
        (("a", {p: (epoch, 5), 99: (1, 1)}, c.now), ValueError, "positions"),   # all checked first
        (("a", {p: "x"}, c.now), TypeError, r"positions\[\d+\]"),
        (("a", {p: (epoch, -1)}, c.now), ValueError, r"positions\[\d+\]\.seq"),
        (("a", {p: (epoch, 5, 6)}, c.now), ValueError, "commit"),
        (("a", {p: (epoch, 1.5)}, c.now), TypeError, "seq"),
        (("a", None, c.now - 1), ValueError, "before"),
        (("a", None, float("nan")), ValueError, "now"),
    ]
    for args, exc, match in bad:
        with pytest.raises(exc, match=match):
            c.ctl.heartbeat(*args)
    after = (c.ctl.status(c.now), [c.ctl.partition(p) for p in range(c.ctl.partitions)], c.ctl.detector.last_heartbeat("a"))
    assert after == before
    with pytest.raises(ValueError, match="before the last tick"):
        c.ctl.tick(c.now - 1)
    with pytest.raises(ValueError, match="partitions"):
        c.ctl.partition(c.ctl.partitions)
    with pytest.raises(TypeError, match="keys"):
        c.ctl.route_many("not a batch")


# --- real threads -------------------------------------------------------------------------------

def test_routes_never_fail_while_a_background_controller_fails_over():
    ring = HashRing(NODES)
    ctl = FailoverController(ring, 3, 2, partitions=64, tick_interval=0.01, hold_down=0.5)
    keys = [f"key-{i}" for i in range(20000)]
    stop = threading.Event()
    errors = []
    alive = set(NODES)

    def heartbeats():
        while not stop.is_set():
            for node in sorted(alive):
                ctl.heartbeat(node)
            time.sleep(0.02)

    def lookups():
        try:
            while not stop.is_set():
                routes = ctl.route_many(keys)
                assert (routes.primary >= 0).all()
                for k in keys[:50]:
                    assert ctl.route(k).primary in NODES
        except Exception as exc:                    # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=heartbeats), threading.Thread(target=lookups),
               threading.Thread(target=lookups)]
    with ctl.start():
        for t in threads:
            t.start()
        time.sleep(0.6)
        alive.discard("a")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(ctl.partition(p).primary == "a" for p in range(64)):
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert all(ctl.partition(p).primary != "a" for p in range(64))
    assert ctl.status().metrics["failovers"] > 0
    assert not ctl.status().active                         # stop() gave up the lease


def test_readme_failover_example_prints_what_the_readme_says(capsys):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Failover"):]
    code, output = re.search(r"```python\n(.*?)```\n\nOutput:\n\n```\n(.*?)```", section, re.S).groups()
    exec(compile(code, "README.md#failover", "exec"), {})
    assert capsys.readouterr().out == output


def test_heartbeat_returns_the_events_it_causes_and_leave_in_sync_shrinks_at_once():
    c = Cluster()
    c.run(1.0)
    c.run(1.5, alive="bcd")
    e = c.kinds("failover")[0]
    events = c.ctl.heartbeat(e.new_primary, {e.partition: (e.epoch - 1, 1)}, c.now + 0.01)
    assert [x.kind for x in events] == ["stale_epoch"]
    c.now += 0.01
    events = c.ctl.heartbeat("a", None, c.now + 0.01)
    assert [x.kind for x in events] == ["node_up"]
    p = e.partition
    part = c.ctl.partition(p)
    backup = next(n for n in part.in_sync if n != part.primary)
    (shrink,) = c.ctl.leave_in_sync(backup, p, "its log reader was evicted")
    assert shrink.kind == "isr_shrink" and shrink.node == backup and "evicted" in shrink.reason
    assert backup not in c.ctl.partition(p).in_sync
    assert c.ctl.leave_in_sync(backup, p) == []                     # already out: nothing to do
    with pytest.raises(ValueError, match="primary"):
        c.ctl.leave_in_sync(part.primary, p)
    with pytest.raises(KeyError, match="zz"):
        c.ctl.leave_in_sync("zz", p)
    with pytest.raises(ValueError, match="partitions"):
        c.ctl.leave_in_sync(backup, c.ctl.partitions)


# --- found in review: each of these failed before its fix -----------------------------------

def test_partition_state_carries_the_revision_of_its_own_in_sync_set():
    c = Cluster(hold_down=0.5, fail_back=False)
    c.run(1.0)
    c.run(1.5, alive="bcd")
    c.run(2.0, alive=NODES)
    for e in c.kinds("isr_expand"):
        assert e.revision is not None
    for p in range(c.ctl.partitions):
        part = c.ctl.partition(p)
        assert part.revision == c.ctl.revision(p) == c.store.get(f"hashring/partition/{p}").revision


def test_a_controller_on_a_fresh_store_hands_out_epochs_above_the_reported_ones():
    c = Cluster()
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    ctl2 = FailoverController(c.ring, 3, 2, partitions=c.ctl.partitions, clock=lambda: c.now, hold_down=1.0)
    events = []
    ctl2.on_event(events.append)
    for _ in range(60):                            # a, never heard from, is down after hard_timeout
        c.now += 0.1
        for node in "bcd":
            part = ctl2.partition(p)
            ctl2.heartbeat(node, {p: Position(5, 10)} if node in part.replicas else None, c.now)
        ctl2.tick(c.now)
    assert any(e.kind == "epoch_ahead" and e.partition == p and e.epoch == 5 for e in events)
    assert ctl2.partition(p).epoch == 6 and ctl2.partition(p).primary != "a"


def test_a_new_controller_remembers_the_commit_and_never_promotes_an_emptied_replica():
    c, p = lose_a_partition()                     # a was in sync alone; it keeps the partition's claim
    assert c.ctl.partition(p).primary is None
    commit = c.ctl.status().partitions[p].commit
    assert commit > 0
    c.ctl.stop()
    ctl2 = FailoverController(c.ring, 3, 1, partitions=c.ctl.partitions, clock=lambda: c.now, store=c.store,
                              hold_down=0.0)
    assert ctl2.status().partitions[p].commit == commit
    for _ in range(30):                            # a comes back empty
        c.now += 0.1
        for node in NODES:
            part = ctl2.partition(p)
            ctl2.heartbeat(node, {p: Position(part.epoch, 0)} if node == "a" else None, c.now)
        ctl2.tick(c.now)
    assert ctl2.partition(p).primary is None


def test_backup_that_died_with_its_primary_takes_over_when_it_returns():
    c = Cluster()
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    backup, third = c.ctl.partition(p).replicas[1:]
    c.lagging = {third}
    c.run(3.0)                                    # third leaves the in-sync set (lag)
    assert c.ctl.partition(p).in_sync == {"a", backup}
    c.run(1.5, alive=set(NODES) - {"a", backup})
    assert c.ctl.partition(p).primary is None and backup in c.ctl.partition(p).in_sync
    c.run(2.0, alive=set(NODES) - {"a"})
    assert c.ctl.partition(p).primary == backup


def test_a_standby_controller_follows_the_records_and_changes_nothing():
    c = Cluster()
    c.run(1.0)
    standby = FailoverController(c.ring, 3, 2, partitions=c.ctl.partitions, clock=lambda: c.now,
                                 store=c.store, hold_down=1.0)
    c.run(1.5, alive="bcd")
    standby.tick(c.now)
    e = c.kinds("failover")[0]
    assert standby.partition(e.partition) == c.ctl.partition(e.partition)
    standby.check_epoch(e.partition, e.epoch, e.new_primary)
    with pytest.raises(StaleEpochError):
        standby.check_epoch(e.partition, e.epoch - 1, "a")
    part = c.ctl.partition(e.partition)
    backup = next(n for n in part.in_sync if n != part.primary)
    revision = c.store.revision
    with pytest.raises(RuntimeError, match="standing by"):
        standby.leave_in_sync(backup, e.partition)
    assert c.store.revision == revision


def test_a_different_layout_on_the_same_store_is_refused():
    c = Cluster()
    with pytest.raises(ValueError, match="partitions"):
        FailoverController(c.ring, 3, 2, partitions=8, clock=lambda: c.now, store=c.store)
    with pytest.raises(ValueError, match="replication_factor"):
        FailoverController(c.ring, 2, 2, partitions=16, clock=lambda: c.now, store=c.store)


def test_more_bad_input_names_the_argument():
    c = Cluster()
    c.run(0.5)
    with pytest.raises(TypeError, match="node"):
        c.ctl.heartbeat(["a"])
    with pytest.raises(TypeError, match="node"):
        c.ctl.leave_in_sync(["a"], 0)
    p = next(p for p in range(c.ctl.partitions) if "a" not in c.ctl.partition(p).replicas)
    with pytest.raises(ValueError, match="not a replica"):
        c.ctl.leave_in_sync("a", p)
    with pytest.raises(KeyError, match="zz"):
        c.ctl.check_epoch(0, 1, "zz")
    with pytest.raises(TypeError, match="node"):
        c.ctl.check_epoch(0, 1, 42)
    for clock in (lambda: float("nan"), lambda: "12"):
        with pytest.raises(TypeError, match="clock"):
            FailoverController(HashRing(NODES), 3, 2, clock=clock)
    with pytest.raises(ValueError, match="pause_limit"):
        FailoverController(HashRing(NODES), 3, 2, tick_interval=0.5, pause_limit=0.9)
    with pytest.raises(ValueError, match="lease_ttl"):
        FailoverController(HashRing(NODES), 3, 2, tick_interval=0.5, lease_ttl=0.9)


def test_an_unavailable_partition_accepts_no_epoch():
    c, p = lose_a_partition()
    part = c.ctl.partition(p)
    assert part.primary is None
    with pytest.raises(StaleEpochError, match="None"):
        c.ctl.check_epoch(p, part.epoch)


def test_concurrent_ticks_on_the_real_clock_never_see_time_go_backwards():
    ctl = FailoverController(HashRing(NODES), 3, 2, partitions=16)
    errors = []

    def ticks():
        try:
            for _ in range(300):
                ctl.heartbeat("a")
                ctl.tick()
        except Exception as exc:                     # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ticks) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_stop_from_a_callback_then_start_leaves_one_loop():
    ctl = FailoverController(HashRing(NODES), 3, 2, partitions=16, tick_interval=0.01, hard_timeout=0.05,
                             lease_ttl=0.5)
    stopped = threading.Event()

    def on_down(event):
        if event.kind == "node_down" and not stopped.is_set():
            stopped.set()
            ctl.stop()

    ctl.on_event(on_down)
    ctl.start()
    assert stopped.wait(5)
    ctl.start()
    time.sleep(0.1)
    loops = [t for t in threading.enumerate() if t.name == "hashring-failover"]
    ctl.stop()
    assert len(loops) == 1


def test_a_new_incarnation_leaves_every_in_sync_set_and_hands_over_its_partitions():
    c = Cluster(hold_down=1.0, fail_back=False)
    for node in NODES:
        c.ctl.heartbeat(node, None, c.now, incarnation=1)
    c.run(1.0)
    led = {p for p, n in enumerate(c.primaries()) if n == "a"}
    backs = {p for p in range(c.ctl.partitions) if "a" in c.ctl.partition(p).in_sync} - led
    c.now += 0.05
    events = c.ctl.heartbeat("a", None, c.now, incarnation=2)      # restarted between two beats
    c.ctl.tick(c.now)
    kinds = [e.kind for e in c.events]
    assert "node_restarted" in kinds and "node_down" not in kinds
    assert {e.partition for e in c.kinds("isr_shrink") if e.node == "a"} == backs
    assert {e.partition for e in c.kinds("failover")} == led
    assert all("a" not in c.ctl.partition(p).in_sync for p in range(c.ctl.partitions))
    assert c.store.get("hashring/node/a").value == b"2"
    # A successor controller on the store knows incarnation 2: only a change counts.
    c.ctl.stop()
    ctl2 = FailoverController(c.ring, 3, 2, partitions=c.ctl.partitions, clock=lambda: c.now, store=c.store)
    ctl2.heartbeat("b", None, c.now, incarnation=1)
    assert ctl2.heartbeat("a", None, c.now, incarnation=2) == []
    with pytest.raises(ValueError, match="incarnation"):
        ctl2.heartbeat("a", None, c.now, incarnation=-1)


def test_a_restarted_primary_with_no_candidate_leaves_its_partition_unavailable_not_to_itself():
    c = Cluster(max_lag=0.5, min_in_sync=1, hold_down=0.5)
    for node in NODES:
        c.ctl.heartbeat(node, None, c.now, incarnation=1)
    c.run(1.0)
    p = next(p for p, n in enumerate(c.primaries()) if n == "a")
    c.lagging = set(c.ctl.partition(p).replicas[1:])
    c.run(1.5)
    assert c.ctl.partition(p).in_sync == {"a"}
    c.now += 0.05
    c.ctl.heartbeat("a", None, c.now, incarnation=2)
    c.run(3.0)
    part = c.ctl.partition(p)
    assert part.primary is None and "a" not in part.in_sync
    assert [e.partition for e in c.kinds("unavailable")] == [p]


# --- found in the second review ---------------------------------------------------------------

def test_primaries_that_report_no_config_are_not_replaced_unless_configs_are_required():
    c = Cluster()
    c.confirm = False
    c.run(30.0)
    assert not c.kinds("failover") and not c.kinds("unavailable")
    strict = Cluster(require_config=True, hard_timeout=2.0)
    strict.confirm = False
    strict.run(3.0)
    assert strict.kinds("failover")                 # opted in: a primary that applies nothing goes


def test_a_callback_may_call_the_controller():
    c = Cluster()
    c.run(1.0)
    results = []

    def on_event(event):
        if event.kind == "failover" and not results:
            part = c.ctl.partition(event.partition)
            backup = next((n for n in part.in_sync if n != part.primary), None)
            if backup is not None:
                results.append(c.ctl.leave_in_sync(backup, event.partition, "from a callback"))

    c.ctl.on_event(on_event)
    done = threading.Event()

    def run():
        c.run(1.5, alive="bcd")
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert done.wait(10), "a callback calling the controller deadlocked it"
    assert results and [e.kind for e in results[0]] == ["isr_shrink"]
    assert any(e.reason.startswith("from a callback") for e in c.kinds("isr_shrink"))
