"""The log buffer's C data path (hashring/_logbuf.h) without Python: tests/c/logbuf_stress.c.

1 writer thread + 4 reader threads over a private segment, variable-length entries whose
length and bytes derive from their seq, >= 1000 wraps of the ring; every reader checks
every seq once, in order, with exact bytes; at the end the commit is the last seq.

* a plain -O2 build runs the full 10**6 entries (seconds);
* a ThreadSanitizer build (-O1 -g -fsanitize=thread, marked ``tsan``) runs fewer entries
  and must print no "WARNING: ThreadSanitizer".

Note: gcc's ThreadSanitizer does not model atomic_thread_fence (gcc warns -Wtsan), so the
handshakes built on fences alone (hr_published's retry loop, the join/free_pos fence pair)
are exercised but not verified by it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SOURCE = os.path.join(TESTS, "c", "logbuf_stress.c")
INCLUDE = os.path.join(ROOT, "hashring")
GCC = shutil.which("gcc")

pytestmark = pytest.mark.skipif(GCC is None, reason="gcc is not installed")

TRIVIAL = r"""
#include <pthread.h>
static int x;
static void *run(void *p) { __atomic_fetch_add(&x, 1, __ATOMIC_RELAXED); return p; }
int main(void) { pthread_t t; pthread_create(&t, 0, run, 0); pthread_join(t, 0); return x == 1 ? 0 : 1; }
"""


def _compile(out_dir, flags, source=SOURCE, name="logbuf_stress"):
    exe = os.path.join(str(out_dir), name)
    cmd = [GCC, *flags, "-I", INCLUDE, source, "-o", exe]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return exe, res


def _run(cmd, timeout):
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return res, time.monotonic() - t0


def _summary(stdout: str) -> dict:
    m = re.search(r"^ok (.*)$", stdout, re.M)
    assert m, stdout
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


@pytest.fixture(scope="module")
def tsan_flags(tmp_path_factory):
    """-fsanitize=thread flags, or a skip when the TSan runtime is missing."""
    d = tmp_path_factory.mktemp("tsan-probe")
    src = d / "trivial.c"
    src.write_text(TRIVIAL)
    flags = ["-O1", "-g", "-fsanitize=thread", "-pthread"]
    exe, res = _compile(d, flags, source=str(src), name="trivial")
    if res.returncode != 0:
        pytest.skip(f"gcc cannot build with -fsanitize=thread: {res.stderr.strip()[-300:]}")
    run = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    if run.returncode != 0 or "ThreadSanitizer" in run.stderr:
        pytest.skip(f"the ThreadSanitizer runtime does not work here: {run.stderr.strip()[-300:]}")
    return flags


def test_stress_plain_build_full_count(tmp_path):
    exe, build = _compile(tmp_path, ["-O2", "-Wall", "-Wextra", "-pthread"])
    assert build.returncode == 0, build.stderr
    res, seconds = _run([exe, "1000000", "65536"], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    s = _summary(res.stdout)
    assert s["entries"] == 1_000_000 and s["commit"] == 1_000_000 and s["readers"] == 4
    assert s["wraps"] >= 1000, s
    assert seconds < 30, f"took {seconds:.1f} s"
    print(f"\n{res.stdout.strip()} (wall {seconds:.2f} s)")


def test_stress_rejects_bad_arguments(tmp_path):
    exe, build = _compile(tmp_path, ["-O2", "-pthread"])
    assert build.returncode == 0, build.stderr
    for args in (["0"], ["x"], ["100", "5000"], ["100", "2048"]):
        assert subprocess.run([exe, *args], capture_output=True, timeout=30).returncode == 2


@pytest.mark.tsan
@pytest.mark.parametrize("count, capacity", [(200_000, 4096), (100_000, 65536)])
def test_stress_under_thread_sanitizer(tmp_path, tsan_flags, count, capacity):
    exe, build = _compile(tmp_path, tsan_flags)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1")
    t0 = time.monotonic()
    res = subprocess.run([exe, str(count), str(capacity)], capture_output=True, text=True,
                         timeout=120, env=env)
    seconds = time.monotonic() - t0
    assert "WARNING: ThreadSanitizer" not in res.stderr, res.stderr[-6000:]
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    s = _summary(res.stdout)
    assert s["entries"] == count and s["commit"] == count
    if capacity == 4096:
        assert s["wraps"] >= 1000, s
    assert seconds < 60, f"took {seconds:.1f} s"
    print(f"\n{res.stdout.strip()} (TSan, wall {seconds:.2f} s)")


def test_deposed_writer_cannot_publish_or_clobber_the_publish_record(tmp_path):
    exe, build = _compile(tmp_path, ["-O2", "-pthread"])
    assert build.returncode == 0, build.stderr
    res = subprocess.run([exe, "--stale-publish"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
