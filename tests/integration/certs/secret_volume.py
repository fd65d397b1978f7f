"""What kubelet does with a Secret volume, for the webhook replicas of the test world: the Secret's keys
(the volume's `items`) as files in a folder, replaced by an atomic swap of the `..data` symlink whenever
the Secret changes (kubelet's AtomicWriter), looked at every `period` seconds (kubelet: its sync period
plus the Secret cache's TTL, about a minute; here a fraction of a second so tests stay short).

`hold()` stops the updates (a node whose kubelet lags behind), `release()` resumes them.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
from pathlib import Path

from tests.harness.kubeapi import FakeKubeAPI

ITEMS = ("tls.crt", "tls.key", "ca.crt")


class SecretVolume:
    def __init__(
        self,
        api: FakeKubeAPI,
        namespace: str,
        name: str,
        directory: Path,
        items: tuple[str, ...] = ITEMS,
        period: float = 0.2,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.directory = directory
        self.items = items
        self.period = period
        self.projected_version = ""  # resourceVersion of the Secret the files show
        self._held = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"secret-volume-{directory.name}", daemon=True)
        self._generation = 0
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> SecretVolume:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def hold(self) -> None:
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def sync(self) -> None:
        """One look at the Secret: project it when it changed (and has every item)."""
        secret = self.api.try_get("secrets", self.name, self.namespace)
        if secret is None:
            return
        version = secret["metadata"]["resourceVersion"]
        data = secret.get("data") or {}
        if version == self.projected_version or not all(k in data for k in self.items):
            return
        self._generation += 1
        target = self.directory / f"..{self._generation:06d}"
        target.mkdir()
        for key in self.items:
            path = target / key
            path.write_bytes(base64.b64decode(data[key]))
            os.chmod(path, 0o600)
        tmp_link = self.directory / "..data_tmp"
        tmp_link.unlink(missing_ok=True)
        os.symlink(target.name, tmp_link)
        old = os.readlink(self.directory / "..data") if (self.directory / "..data").is_symlink() else None
        os.replace(tmp_link, self.directory / "..data")  # the atomic swap
        for key in self.items:
            link = self.directory / key
            if not link.is_symlink():
                os.symlink(f"..data/{key}", link)
        if old is not None:
            shutil.rmtree(self.directory / old, ignore_errors=True)
        self.projected_version = version

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            if not self._held.is_set():
                self.sync()
