"""libketama (the ``ketama`` 0.1.1 binding) in a worker process of its own.

The binding cannot share a process with the rest of the suite: it keeps each ring in a
SysV shared memory segment keyed by ``ftok(config file)``, it segfaults at 118 or more
servers, and deleting one ``Ketama`` instance crashes every other live one. So the
worker keeps every instance alive, gives every ring a config file of its own (so every
``ftok`` key differs), removes the segments it created when told to exit, and leaves
with ``os._exit(0)`` before the library's teardown can run.

The parent sends the keys once; later commands name a prefix length of them, so a
timed round is one command and one "done" answer over a pipe (~0.1 ms round trip,
included in rounds of 30-300 ms).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import shutil
import tempfile

IPC_RMID = 0
COMMANDS = frozenset({"keys", "config", "load", "loop", "collect", "fetch", "names", "rss"})
SPAWN = mp.get_context("spawn")


class KetamaWorker:
    """Parent side: start the worker, send it commands, stop it."""

    def __init__(self, keys: list, prefixes: list):
        self._conn, child = SPAWN.Pipe()
        self._proc = SPAWN.Process(target=serve, args=(child,), daemon=True, name="ketama-worker")
        self._proc.start()
        child.close()
        self.call("keys", keys, prefixes)

    def call(self, command: str, *args):
        """Run one command in the worker and return its answer (raise on its errors)."""
        try:
            self._conn.send((command, *args))
            status, value = self._conn.recv()
        except (EOFError, BrokenPipeError):
            raise RuntimeError(f"the ketama worker died during {command!r} "
                               f"(exit code {self._proc.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"ketama worker, {command!r}: {value}")
        return value

    def close(self):
        if self._proc.is_alive():
            try:
                self.call("exit")
            except (RuntimeError, OSError):
                pass
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._conn.close()


# --- worker side ---------------------------------------------------------------------


class _Server:
    def __init__(self):
        import ketama

        self._ketama = ketama
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.ftok.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._dir = tempfile.mkdtemp(prefix="ketama-bench-")
        self._ipc_keys = set()
        self._rings = []            # never deleted: deleting one Ketama crashes the others
        self._keys = {}             # prefix length -> list of keys
        self._last = None

    def keys(self, keys, prefixes):
        self._keys = {n: keys[:n] for n in prefixes if n <= len(keys)}

    def config(self, names):
        """Write a config file (with the trailing newline the parser needs); return its path.

        The path's ftok key must be new: a segment left under the same key would be reused.
        """
        while True:
            fd, path = tempfile.mkstemp(suffix=".conf", dir=self._dir)
            with os.fdopen(fd, "w") as f:
                f.writelines(f"{name}\t1\n" for name in names)
            key = self._ftok(path)
            if key not in self._ipc_keys and self._libc.shmget(key, 0, 0) < 0:
                self._ipc_keys.add(key)
                return path
            # keep the colliding file, so its inode is not handed out again

    def load(self, path):
        ring = self._ketama.Ketama(path)
        self._rings.append(ring)
        return len(self._rings) - 1, len(ring.get_points())

    def loop(self, ring, n):
        get, keys = self._rings[ring].get_server, self._prefix(n)
        for key in keys:
            get(key)

    def collect(self, ring, n):
        get, keys = self._rings[ring].get_server, self._prefix(n)
        self._last = [get(key)[1] for key in keys]

    def fetch(self):
        result, self._last = self._last, None
        return result

    def names(self, ring, keys):
        get = self._rings[ring].get_server
        return [get(key)[1] for key in keys]

    def rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cleanup(self):
        """Mark our segments and semaphores for removal (they go when we detach at exit)."""
        for key in self._ipc_keys:
            shmid = self._libc.shmget(key, 0, 0)
            if shmid >= 0:
                self._libc.shmctl(shmid, IPC_RMID, None)
            semid = self._libc.semget(key, 0, 0)
            if semid >= 0:
                self._libc.semctl(semid, 0, IPC_RMID)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _prefix(self, n):
        if n not in self._keys:
            raise KeyError(f"no prefix of {n:,} keys: the worker was given {sorted(self._keys)}")
        return self._keys[n]

    def _ftok(self, path):
        key = self._libc.ftok(path.encode(), ord("R"))      # libketama's project id
        if key == -1:
            raise OSError(ctypes.get_errno(), f"ftok({path!r}) failed")
        return key


def serve(conn):
    """Answer commands until "exit"; every answer is ("ok", value) or ("error", message)."""
    server = None
    while True:
        command, *args = conn.recv()
        if command == "exit":
            break
        try:
            if command not in COMMANDS:
                raise ValueError(f"unknown command {command!r}")
            if server is None:
                server = _Server()
            value = getattr(server, command)(*args)
        except Exception as exc:        # report it; the parent raises
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("ok", value))
    if server is not None:
        server.cleanup()
    conn.send(("ok", None))
    conn.close()
    os._exit(0)                         # skip the binding's teardown, which crashes
