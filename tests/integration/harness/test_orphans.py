"""The test world's processes die with whoever started them, even when it is killed outright (no exit
handler runs): the parent-death signal of tests/harness/procs.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.harness.procs import ManagedProcess, alive, wait_for

ROOT = Path(__file__).resolve().parents[3]


def test_a_killed_process_leaves_no_child_of_its_world_behind(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.harness.start_world", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # printed once the world runs; EOF if the child failed
        assert line, f"the world did not start (exit code {child.wait()})"
        started = {int(pid): start for pid, start in json.loads(line)["descendants"].items()}
        # redis x2, docker-registry, gunicorn master + 2 workers, listener (token server, API: threads)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in started)
        for name in ("redis-server", "docker-registry", "pulltag webhook", "pulltag listener"):
            assert name in commands.replace("\0", " "), f"{name} is not among the world's processes"
        assert len(started) >= 7
    finally:
        child.kill()  # SIGKILL: no atexit, no finally in the child
        child.wait()

    def none_alive() -> bool:
        return not [pid for pid, start in started.items() if alive(pid, start)]

    wait_for(none_alive, 10, "every process of the killed world to be gone")


def test_a_server_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* exits: servers are forked by a long-lived thread
    started: list[ManagedProcess] = []
    argv = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]
    thread = threading.Thread(target=lambda: started.append(ManagedProcess("idle", argv, tmp_path).start()))
    thread.start()
    thread.join()
    process = started[0]
    try:
        assert process.proc is not None
        # a signal-0 probe after the thread is gone: the process must still be there and not be a zombie
        stat = Path(f"/proc/{process.proc.pid}/stat").read_text().rpartition(")")[2].split()
        assert process.running and stat[0] != "Z"
        os.kill(process.proc.pid, 0)
    finally:
        process.stop()
    assert process.proc.returncode == -signal.SIGTERM
