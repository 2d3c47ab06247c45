"""The one database every table group shares: a connection per thread (the scheduler, Bolt's listener threads and
the scan workers all use the store at once), set up once per process under a file lock, and the store's way to
write and read times."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import overload

from .sqlite import Database

CHUNK = 500  # stay well under SQLite's bound-variable limit


class Connections:
    """The calling thread's connection to the database at ``path``; ``close`` closes every thread's."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        # this process's bulk writers take turns here: SQLite's busy handler sleeps 1 to 25 ms between its tries,
        # and the scan's writers (16 workers' manifest caches, the snapshot rows) spent most of their time asleep
        self.bulk_writing = threading.Lock()

    @property
    def db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA foreign_keys = ON")
            db = self._local.db = Database(conn)
            with self._lock:
                # scan workers come and go: close the connections of threads that have ended
                for _thread, old in [c for c in self._connections if not c[0].is_alive()]:
                    old.close()
                self._connections = [c for c in self._connections if c[0].is_alive()]
                self._connections.append((threading.current_thread(), conn))
        return db

    def close(self) -> None:
        with self._lock:
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


class Tables:
    """A group of tables over the store's one database: ``db`` is the calling thread's connection."""

    def __init__(self, connections: Connections):
        self._connections = connections

    @property
    def db(self) -> Database:
        return self._connections.db

    @contextmanager
    def unsynced_transaction(self) -> Iterator[None]:
        """A transaction committed without waiting for the disk (see ``unsynced``), one thread of this process at
        a time: they queue on a lock that wakes the next at once, not in SQLite's sleeping busy handler."""
        with self._connections.bulk_writing, unsynced(self.db), self.db.conn:
            yield


@contextmanager
def initialising(path: str) -> Iterator[None]:
    """One process at a time sets up the database (WAL, migrations): switching the journal mode and the
    migrations' own transactions run outside SQLite's busy handling, so processes starting together on a fresh
    database would otherwise fail with "database is locked". A file lock beside the database serialises them."""
    if path == ":memory:" or path.startswith("file:"):
        yield
        return
    import fcntl

    try:
        lock = open(f"{path}-init.lock", "a+")  # noqa: SIM115 - closed by the with below
    except OSError:  # no such directory, not writable: SQLite will say so, naming ECR_COST_DB
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def retry_while_busy(call, seconds: float = 30.0) -> None:
    """``call`` again while another connection holds the database (a process already serving), up to
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            call()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# the store's way to write and read times, for its own tables and those other modules keep over this database
def to_iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


@overload
def from_iso(text: str) -> datetime: ...
@overload
def from_iso(text: None) -> None: ...
def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def insert_or_replace(db: Database, table: str, values: dict) -> None:
    """One row, as sqlite-utils' ``insert(replace=True)`` writes it, in one statement: sqlite-utils reads the
    table's schema first (a dozen queries a row), a third of an organisation scan's store time."""
    columns = ", ".join(f"[{name}]" for name in values)
    db.execute(f"insert or replace into [{table}] ({columns}) values ({', '.join('?' * len(values))})",
               list(values.values()))


def insert_or_ignore(db: Database, table: str, rows: list[dict]) -> None:
    """Rows (all with the same columns) not already there, in one statement run for each: sqlite-utils'
    ``insert_all(ignore=True)`` reads the table's schema first."""
    columns = list(rows[0])
    names = ", ".join(f"[{name}]" for name in columns)
    db.conn.executemany(f"insert or ignore into [{table}] ({names}) values ({', '.join('?' * len(columns))})",
                        [[row[name] for name in columns] for row in rows])


@contextmanager
def unsynced(db: Database) -> Iterator[None]:
    """Commits inside are made without waiting for the disk (WAL, synchronous=NORMAL), for what a power loss may
    lose at no cost: a running scan's snapshot rows (the scan is abandoned anyway) and the manifest cache (read
    again). The next FULL commit (finish_scan, any decision or backup) syncs them. Across an organisation the fsync
    per repository was a third of the scan's time, and held the write lock the other writers waited for."""
    if db.conn.in_transaction:  # SQLite refuses to change the level inside one: its commit stays FULL
        yield
        return
    before = db.execute("PRAGMA synchronous").fetchone()[0]
    db.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        db.execute(f"PRAGMA synchronous = {int(before)}")

