"""A process that starts a test world and then waits to be killed (tests/integration/harness/test_orphans.py).

It starts the whole World (redis-server, docker-registry, the webhook's gunicorn master and workers, the
listener, the kubelet), plus one more redis-server started from a short-lived thread (the parent-death
signal is tied to the forking thread), prints one JSON line: every descendant process with its start time,
and blocks until it is killed.

    python -m tests.integration.harness.start_world WORKDIR
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from tests.harness.procs import descendants
from tests.harness.redis import RedisServer
from tests.harness.world import World


def main(workdir: Path) -> None:
    World(workdir / "world", with_harbor=False).start()
    started: list[RedisServer] = []
    thread = threading.Thread(target=lambda: started.append(RedisServer(workdir / "redis").start()))
    thread.start()
    thread.join()  # the thread that forked this redis-server has ended
    print(json.dumps({"pid": os.getpid(), "descendants": descendants(os.getpid())}), flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main(Path(sys.argv[1]))
