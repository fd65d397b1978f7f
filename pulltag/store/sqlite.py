"""The embedded store: one SQLite file in WAL mode, shared by threads and processes.

Design notes (why it looks like this):
- sqlite3 connections must not cross threads, and must not cross a fork (gunicorn forks its workers
  after the app, and so maybe the store, was created). Each thread gets its own connection through a
  `threading.local`, and a change of pid drops every connection inherited from the parent.
- Writers serialise on SQLite's file lock; the busy timeout (the store timeout) makes a writer wait for
  the lock instead of failing at once. Past it, "database is locked" surfaces as `StoreUnavailable`.
- Every mutating call runs in `BEGIN IMMEDIATE`, which takes the write lock up front, so a
  read-check-write sequence (claims, the ledger bound) cannot interleave with another writer.
- Expired rows are ignored by every read (`expires_at > now`) and deleted lazily by writers, at most
  once per `_PURGE_INTERVAL` per store object.
- `checkpoint_in_background` (the webhook's store): commits never checkpoint the WAL; a thread of each
  process does, every `checkpoint_interval` seconds (see `sqlite_checkpoint.py` for why).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from pulltag.store.base import (
    AdmissionRecord,
    LedgerEntry,
    Store,
    StoreError,
    StoreUnavailable,
    canonical_entry,
    entry_from_json,
    entry_to_json,
    ledger_image,
    record_from_json,
    record_to_json,
)
from pulltag.store.sqlite_checkpoint import DEFAULT_INTERVAL, BackgroundCheckpointer
from pulltag.store.sqlite_inventory import INVENTORY_SCHEMA, SQLiteInventory

log = logging.getLogger(__name__)

_PURGE_INTERVAL = 60.0  # seconds between lazy deletions of expired rows (per store object)

# Connections inherited over a fork: the child must neither use nor close them (closing could touch
# the parent's WAL state), so they are kept referenced here for the life of the process.
_ABANDONED: list[sqlite3.Connection] = []

# Guards the switch to fresh connections after a fork. A lock held by another thread at fork time
# stays held forever in the child, so the child gets a new one.
_FORK_LOCK = threading.Lock()


def _reinit_fork_lock() -> None:
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reinit_fork_lock)

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS admissions (
    uid TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    admitted_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS admissions_by_name ON admissions (namespace, name);
CREATE INDEX IF NOT EXISTS admissions_by_time ON admissions (admitted_at);
CREATE INDEX IF NOT EXISTS admissions_by_expiry ON admissions (expires_at);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    namespace TEXT NOT NULL,
    tagged_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_time ON ledger (tagged_at, id);
CREATE INDEX IF NOT EXISTS ledger_by_image ON ledger (image, tagged_at);
CREATE INDEX IF NOT EXISTS ledger_by_digest ON ledger (digest, tagged_at);
CREATE INDEX IF NOT EXISTS ledger_by_namespace ON ledger (namespace, tagged_at);
-- the ledger's row count, kept in the same transaction as each append, so bounding it costs no scan
CREATE TABLE IF NOT EXISTS ledger_count (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL);
INSERT OR IGNORE INTO ledger_count (one, n) VALUES (1, 0);
"""
    + INVENTORY_SCHEMA
)

# Messages of sqlite3.OperationalError that mean "cannot reach the data now", not "bad request".
_UNAVAILABLE_MARKERS = ("locked", "busy", "unable to open", "disk i/o", "readonly", "read-only", "full")


def sqlite_path(url: str) -> str:
    """The file's absolute path: `sqlite:///var/lib/pulltag/pulltag.db` -> `/var/lib/pulltag/pulltag.db`.

    The path is what follows `sqlite://`, as in the documented default, so it is always absolute;
    `sqlite:////abs/file.db` (SQLAlchemy's spelling of an absolute path) names the same file.
    """
    if not url.startswith("sqlite:///"):
        raise StoreError("SQLite store URL must start with sqlite:///")
    rest = url[len("sqlite:///") :].lstrip("/")
    if not rest:
        raise StoreError("SQLite store URL names no file")
    return "/" + rest


class SQLiteStore(SQLiteInventory, Store):
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 2.0,
        admission_ttl_seconds: float = 24 * 3600,
        ledger_max_entries: int = 100_000,
        checkpoint_in_background: bool = False,
        checkpoint_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.url = url
        self._path = sqlite_path(url)
        self._timeout = timeout_seconds
        self._admission_ttl = admission_ttl_seconds
        self._ledger_max = ledger_max_entries
        self._local = threading.local()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # This process's connections by the thread that opened them, for close(). A dead thread's is
        # closed when the next one opens: the listener's health server answers each probe on a new
        # thread, and keeping them all leaked a connection per probe. Strong references on purpose: a
        # fork must find every connection here (see _after_fork), none closed by the garbage collector.
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._next_purge = 0.0
        self.checkpointer = (
            BackgroundCheckpointer(self._conn, url, checkpoint_interval) if checkpoint_in_background else None
        )
        self._init_schema()

    # --- connections ---------------------------------------------------------------------------------
    def _unavailable(self, reason: object) -> StoreUnavailable:
        return StoreUnavailable(self.url, str(reason))

    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            self._after_fork()
        conn = cast(sqlite3.Connection | None, getattr(self._local, "conn", None))
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                dead = [t for t in self._connections if not t.is_alive()]
                closing = [self._connections.pop(t) for t in dead]
                self._connections[threading.current_thread()] = conn
            for old in closing:
                with contextlib.suppress(sqlite3.Error):
                    old.close()
        return conn

    def _after_fork(self) -> None:
        with _FORK_LOCK:
            if os.getpid() == self._pid:
                return
            log.debug("pid changed (fork): dropping %d inherited SQLite connections", len(self._connections))
            _ABANDONED.extend(self._connections.values())
            self._connections = {}
            self._local = threading.local()
            self._lock = threading.Lock()  # the parent's may have been held at fork time
            self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        try:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints only
            if self.checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        return conn

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and any(m in text.lower() for m in _UNAVAILABLE_MARKERS):
            return self._unavailable(text)
        return StoreError(f"sqlite store {self.url}: {text}")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A `BEGIN IMMEDIATE` transaction: the write lock is held from the start, so the body is atomic."""
        conn = self._conn()
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise

    def _init_schema(self) -> None:
        """Create the schema idempotently. Several processes may do this at once on a fresh file."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                self._try_init_schema()
                return
            except StoreUnavailable as exc:
                # Switching to WAL needs a moment of exclusive access, and SQLite may report "locked"
                # for it without calling the busy handler. Retry that (only) until the deadline.
                contended = any(m in str(exc).lower() for m in ("locked", "busy"))
                if not contended or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _try_init_schema(self) -> None:
        with self._read() as conn:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite store %s: journal_mode is %s, not wal", self.url, mode)
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def _ttl(self, ttl_seconds: float | None) -> float:
        ttl = self._admission_ttl if ttl_seconds is None else ttl_seconds
        if ttl <= 0:
            raise ValueError(f"TTL must be positive, got {ttl}")
        return ttl

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete expired rows, at most once per interval; called inside a write transaction."""
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_INTERVAL
        for table in ("admissions", "claims", "seen"):
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))

    # --- admission records ---------------------------------------------------------------------------
    def put_admission(self, record: AdmissionRecord, ttl_seconds: float | None = None) -> None:
        self.put_admissions([record], ttl_seconds)

    def put_admissions(self, records: Sequence[AdmissionRecord], ttl_seconds: float | None = None) -> None:
        ttl = self._ttl(ttl_seconds)
        if not records:
            return
        now = time.time()
        rows = [(r.uid, r.namespace, r.name, r.admitted_at, now + ttl, record_to_json(r)) for r in records]
        with self._write() as conn:
            # DELETE + INSERT rather than INSERT OR REPLACE spelled out: a rewrite gets a new, highest
            # rowid, which is how "newest" breaks ties in admitted_at.
            # Row by row, so a uid written twice in one batch ends as its last record.
            for row in rows:
                conn.execute("DELETE FROM admissions WHERE uid = ?", (row[0],))
                conn.execute(
                    "INSERT INTO admissions (uid, namespace, name, admitted_at, expires_at, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
            self._maybe_purge(conn, now)

    def get_admission(self, uid: str) -> AdmissionRecord | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT data FROM admissions WHERE uid = ? AND expires_at > ?", (uid, time.time())
            ).fetchone()
        return None if row is None else record_from_json(row[0])

    def find_admission(self, namespace: str, name: str) -> AdmissionRecord | None:
        # "Newest" is the most recently written live record, matching the Redis by-name pointer.
        with self._read() as conn:
            row = conn.execute(
                "SELECT data FROM admissions WHERE namespace = ? AND name = ? AND expires_at > ?"
                " ORDER BY rowid DESC LIMIT 1",
                (namespace, name, time.time()),
            ).fetchone()
        return None if row is None else record_from_json(row[0])

    def list_admissions(self, namespace: str | None = None, limit: int = 100) -> list[AdmissionRecord]:
        sql = "SELECT data FROM admissions WHERE expires_at > ?"
        params: list[Any] = [time.time()]
        if namespace is not None:
            sql += " AND namespace = ?"
            params.append(namespace)
        sql += " ORDER BY admitted_at DESC, rowid DESC LIMIT ?"
        params.append(max(0, limit))
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [record_from_json(r[0]) for r in rows]

    # --- claims and seen markers ---------------------------------------------------------------------
    def _take(self, table: str, key: str, ttl_seconds: float) -> bool:
        """Insert `key`, or take over an expired row, in one statement: True if this call got it."""
        ttl = self._ttl(ttl_seconds)
        with self._write() as conn:
            now = time.time()
            cur = conn.execute(
                f"INSERT INTO {table} (key, expires_at) VALUES (?, ?)"
                f" ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at"
                f" WHERE {table}.expires_at <= ?",
                (key, now + ttl, now),
            )
            self._maybe_purge(conn, now)
            return cur.rowcount == 1

    def claim(self, key: str, ttl_seconds: float) -> bool:
        return self._take("claims", key, ttl_seconds)

    def release(self, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM claims WHERE key = ?", (key,))

    def mark_seen(self, key: str, ttl_seconds: float) -> bool:
        return self._take("seen", key, ttl_seconds)

    def is_seen(self, key: str) -> bool:
        with self._read() as conn:
            row = conn.execute("SELECT 1 FROM seen WHERE key = ? AND expires_at > ?", (key, time.time()))
            return row.fetchone() is not None

    # --- tag ledger -----------------------------------------------------------------------------------
    def append_ledger(self, entry: LedgerEntry) -> None:
        entry = canonical_entry(entry)
        data = entry_to_json(entry)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO ledger (image, digest, namespace, tagged_at, data) VALUES (?, ?, ?, ?, ?)",
                (entry.image, entry.digest, entry.namespace, entry.tagged_at, data),
            )
            count = conn.execute("UPDATE ledger_count SET n = n + 1 RETURNING n").fetchone()[0]
            excess = int(count) - self._ledger_max
            if excess > 0:
                # oldest by tagged_at (insertion order among equals), the reverse of query order
                deleted = conn.execute(
                    "DELETE FROM ledger WHERE id IN (SELECT id FROM ledger ORDER BY tagged_at, id LIMIT ?)",
                    (excess,),
                ).rowcount
                conn.execute("UPDATE ledger_count SET n = n - ?", (deleted,))

    def query_ledger(
        self,
        *,
        image: str | None = None,
        digest: str | None = None,
        namespace: str | None = None,
        pod: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[LedgerEntry]:
        clauses: list[str] = []
        params: list[Any] = []
        if image is not None:
            image = ledger_image(image)
        for column, value in (("image", image), ("digest", digest), ("namespace", namespace)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if pod is not None:
            # Not a column: only the catch-up asks, always together with the indexed digest.
            clauses.append("json_extract(data, '$.pod') = ?")
            params.append(pod)
        if since is not None:
            clauses.append("tagged_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("tagged_at <= ?")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(max(0, limit))
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT data FROM ledger{where} ORDER BY tagged_at DESC, id DESC LIMIT ?", params
            ).fetchall()
        return [entry_from_json(r[0]) for r in rows]

    # --- lifecycle ------------------------------------------------------------------------------------
    def ping(self) -> None:
        with self._read() as conn:
            conn.execute("SELECT 1 FROM ledger_count").fetchone()

    def close(self) -> None:
        """Close this process's connections (all threads'); the store reopens them if used again."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        with self._lock:
            if os.getpid() != self._pid:
                return  # inherited connections are the parent's; see _after_fork
            connections, self._connections = list(self._connections.values()), {}
            self._local = threading.local()
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"
