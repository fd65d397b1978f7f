"""Under gunicorn, the webhook's SQLite store checkpoints its WAL from a thread of each worker, not in the
commits of admission records (`checkpoint_in_background`; why in `pulltag.store.sqlite_checkpoint`)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.harness.procs import wait_for
from tests.harness.webhook import pod_review
from tests.integration.webhook.conftest import StartServer


def _rows_in_file(path: Path, tmp: Path) -> int:
    """Admission rows in the database file itself: what checkpoints copied there from the WAL."""
    copy = tmp / "copy.db"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'admissions'").fetchone() is None:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM admissions").fetchone()[0])
    finally:
        conn.close()
        copy.unlink()


def test_the_workers_checkpoint_admission_records_into_the_database_file(
    start_server: StartServer, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    server = start_server(f"sqlite:///{path}", workers=2)
    # Far below SQLite's automatic checkpoint (1,000 WAL pages): only the checkpoint thread copies these.
    count = 40
    for n in range(count):
        review = pod_review(uid=f"req-{n}", pod_uid=f"ck-{n}", containers={"app": "registry.local:5000/a:1"})
        status, answer = server.post_json("/validate", review)
        assert status == 200 and answer["response"]["allowed"] is True
    wait_for(lambda: _rows_in_file(path, tmp_path) == count, 30, "the records checkpointed into the file")
