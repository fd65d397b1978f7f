"""Start real servers (redis-server, docker-registry, gunicorn, ...) on free loopback ports.

Each server runs in its own process group in a temporary directory; `stop()` kills the whole group,
and every started server is also stopped at interpreter exit, so a failing test leaves no stray
processes behind.

A process that is killed outright (SIGKILL, or SIGTERM to a benchmark) runs no exit handler, so each
server also carries a parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`, set between fork and exec):
the kernel signals it the moment its parent dies. The kernel ties that signal to the *thread* that forked,
not to the process, so every server is forked by one daemon thread that lives as long as the process
(`_Spawner`): a server started from a short-lived test thread does not die when that thread ends.
A server's own children (gunicorn's workers) get no such signal; gunicorn's workers notice their master
is gone (parent pid changed) within a second and exit.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only makes the call


def die_with_parent(parent: int, sig: int) -> Callable[[], None]:
    """A preexec_fn: deliver `sig` to this child when its parent dies (and at once if it already has)."""

    def preexec() -> None:
        if _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody would signal us
            os._exit(125)

    return preexec


def die_with_my_parent(sig: int = signal.SIGTERM) -> None:
    """This process gets `sig` when its parent dies (e.g. `make demo` killed: make cannot pass a SIGKILL
    on, so the demo would otherwise run on, with its world, after the command that started it is gone).
    """
    parent = os.getppid()
    if _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


class _Spawner:
    """Runs every Popen on one daemon thread that lives as long as the process (see the module doc).

    A daemon thread is never joined: it ends only when the process does, which is exactly when the
    parent-death signal should fire. After a fork (multiprocessing clients of a benchmark) the child
    starts its own thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def popen(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._jobs = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, args=(self._jobs,), daemon=True)
                self._thread.name = "harness-spawner"
                self._thread.start()
            future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
            self._jobs.put((start, future))
        return future.result()

    @staticmethod
    def _run(
        jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[subprocess.Popen[bytes]]]
        ],
    ) -> None:
        while True:
            start, future = jobs.get()
            try:
                future.set_result(start())
            except BaseException as exc:  # handed to the caller, who raises it
                future.set_exception(exc)


_SPAWNER = _Spawner()


class MissingBinary(RuntimeError):
    pass


def require_binary(name: str, apt_package: str) -> str:
    """The binary's path, or a failure naming the apt command that installs it."""
    path = shutil.which(name)
    if path is None:
        raise MissingBinary(
            f"{name} is not installed; install it with: apt-get update && apt-get install -y {apt_package}"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll `condition` until true; raise TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a server that is starting may refuse in any way
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of `root`: pid -> start time (clock ticks since boot; tells a reused pid)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
            starts[int(entry)] = fields[19]
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = starts[pid]
        todo += children.get(pid, [])
    return found


def alive(pid: int, start_time: str) -> bool:
    """Whether the process that had this pid and start time still runs (a zombie counts as dead)."""
    fields = _stat(pid)
    return fields is not None and fields[19] == start_time and fields[0] != "Z"


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass(eq=False)
class ManagedProcess:
    name: str
    argv: Sequence[str]
    workdir: Path
    env: dict[str, str] | None = None
    # what the kernel sends this process when the process that started it dies
    death_signal: int = signal.SIGKILL
    log_path: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def start(self) -> ManagedProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        preexec = die_with_parent(os.getpid(), self.death_signal)
        try:
            self.proc = _SPAWNER.popen(
                lambda: subprocess.Popen(
                    list(self.argv),
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # own process group: stop() kills children too
                    preexec_fn=preexec,
                )
            )
        finally:
            log.close()
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        def ready() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            return condition()

        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not become ready in {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group at once (for chaos tests)."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        else:
            # the leader is gone; children in its group may still be alive
            self.signal(signal.SIGKILL)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return self.proc.returncode


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for process in live:
        with contextlib.suppress(Exception):
            process.stop(timeout=3)
