"""Start real servers (redis-server, docker-registry, gunicorn, ...) on free loopback ports.

Each server runs in its own process group in a temporary directory; `stop()` kills the whole group,
and every started server is also stopped at interpreter exit, so a failing test leaves no stray
processes behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
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
        self.proc = subprocess.Popen(
            list(self.argv),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: stop() kills children too
        )
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
