"""A real redis-server on a free loopback port, in a temporary directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import ManagedProcess, free_port, port_open, require_binary


@dataclass
class RedisServer:
    workdir: Path
    password: str | None = None
    port: int = 0
    process: ManagedProcess | None = None

    def start(self) -> RedisServer:
        binary = require_binary("redis-server", "redis-server")
        if not self.port:
            self.port = free_port()
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "no",
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = ManagedProcess("redis", argv, self.workdir).start()
        self.process.wait_ready(lambda: port_open("127.0.0.1", self.port) and self._pings())
        return self

    def _pings(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def restart(self) -> None:
        """Start again on the same port (after stop() or kill())."""
        if self.process is not None:
            self.process.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
