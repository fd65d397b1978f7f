"""What an SQLite database file holds by itself, without its WAL: what checkpoints have copied there."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path


def rows_in_file(path: Path, table: str) -> int:
    """Rows of `table` in the database file alone (0 while the table itself is only in the WAL). A copy
    taken while a checkpoint writes the file may be torn (an error or a passing count): poll it with
    `wait_for`, or read it when nothing checkpoints."""
    with tempfile.TemporaryDirectory(prefix="pulltag-sqlite-copy-") as tmp:
        copy = Path(tmp) / "copy.db"
        shutil.copyfile(path, copy)  # without -wal and -shm: SQLite then reads the file alone
        conn = sqlite3.connect(copy)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is None:
                return 0
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()
