"""Under gunicorn, the webhook's SQLite store checkpoints its WAL from a thread of each worker, not in the
commits of admission records (`checkpoint_in_background`; why in `pulltag.store.sqlite_checkpoint`)."""

from __future__ import annotations

from pathlib import Path

from tests.harness.procs import wait_for
from tests.harness.sqlite_file import rows_in_file
from tests.harness.webhook import pod_review
from tests.integration.webhook.conftest import StartServer


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
    wait_for(lambda: rows_in_file(path, "admissions") == count, 30, "the records checkpointed into the file")
