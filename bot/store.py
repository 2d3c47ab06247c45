"""The only module that uses SQLite: scans, per-repository snapshots over time, the manifest cache.

One connection per thread (the scheduler, Bolt's listener threads and the scan workers all use
the store at once), WAL journaling and short transactions.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import cast, overload

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .core.analysis import rank
from .core.models import Image, Manifest, PolicyDecision, RepositoryCost, RepositoryRef, ScanProblem, ScanResult
from .errors import ScanAbandoned

migrations = Migrations("ecr_cost_bot")

_CHUNK = 500  # stay well under SQLite's bound-variable limit
SCAN_LEASE = timedelta(minutes=15)  # a running scan whose heartbeat is older than this was abandoned
CLAIM_LEASE = timedelta(minutes=10)  # a claim (one change, one scan) whose holder stopped beating this long is free
HEARTBEAT_SECONDS = 60.0


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        return "?"


# host:pid:nonce:pid-namespace of this process. The nonce tells a restarted container's PID 1 from its
# predecessor; the namespace tells containers that share a host name (host networking) apart.
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def _holder_is_dead(holder: str | None) -> bool:
    """True when ``holder`` is a process of this host and PID namespace that no longer runs (or an earlier one
    with our PID). Anything else (another machine, another container) only its heartbeat can tell."""
    host, pid, _, namespace = ((holder or "").split(":") + ["", "", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit() or namespace != _pid_namespace() or namespace == "?":
        return False
    if int(pid) == os.getpid():
        return holder != PROCESS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@migrations()
def m001_inventory(db: Database) -> None:
    db.table("scans").create({
        "id": int, "generated_at": str, "finished_at": str, "status": str, "price_per_gb_month": float,
        "partial": int, "errors": str, "warnings": str, "repository_count": int, "stored_bytes": int,
        "monthly_cost_usd": float, "api_calls": int, "manifests_fetched": int,
    }, pk="id")
    db.table("repository_snapshots").create({
        "scan_id": int, "arn": str, "account_id": str, "region": str, "repository": str,
        "image_count": int, "tagged_image_count": int, "stored_bytes": int, "listed_bytes": int,
        "monthly_cost_usd": float, "last_pushed_at": str, "last_pulled_at": str, "unused": int,
        "has_lifecycle_policy": int, "lifecycle_policy": str, "owners": str, "tags": str,
    }, pk=("scan_id", "arn"), foreign_keys=[("scan_id", "scans", "id")])
    db.table("repository_snapshots").create_index(["arn", "scan_id"])
    # the image list of a snapshot, kept for the latest scans only (the policy preview reads it)
    db.table("snapshot_images").create({"scan_id": int, "arn": str, "images": str}, pk=("scan_id", "arn"))
    # manifests are immutable per digest: one row per digest, ever
    db.table("manifests").create({
        "digest": str, "media_type": str, "blobs": str, "children": str, "problem": str, "fetched_at": str,
    }, pk="digest")


@migrations()
def m002_policy_changes(db: Database) -> None:
    # the policy text as it was before the bot overwrote it; policy_text NULL = there was none
    db.table("policy_backups").create({
        "id": int, "arn": str, "account_id": str, "region": str, "repository": str, "had_policy": int,
        "policy_text": str, "taken_at": str, "reason": str,
    }, pk="id")
    db.table("policy_backups").create_index(["arn", "id"])
    db.table("decisions").create({
        "id": int, "arn": str, "account_id": str, "region": str, "repository": str, "action": str, "user_id": str,
        "source": str, "at": str, "policy_before": str, "policy_after": str,
        "projected_monthly_savings_usd": float, "backup_id": int,
    }, pk="id", foreign_keys=[("backup_id", "policy_backups", "id")])
    db.table("decisions").create_index(["arn", "id"])


@migrations()
def m003_slack_clicks(db: Database) -> None:
    # one row per Slack interaction handled: a redelivered click is recognised and ignored
    db.table("slack_clicks").create({"click_id": str, "claimed_at": str}, pk="click_id")


@migrations()
def m004_report_runs(db: Database) -> None:
    # one row per report period, claimed before posting: exactly one report per period
    db.table("report_runs").create({"period": str, "claimed_by": str, "claimed_at": str, "status": str,
                              "message_ts": str, "finished_at": str, "error": str}, pk="period")
    # one direct message per repository per owner per period
    db.table("nudges").create({"period": str, "arn": str, "user_id": str, "sent_at": str},
                        pk=("period", "arn", "user_id"))


@migrations()
def m005_trust(db: Database) -> None:
    # who a change was authorised against, and which adoption a rollback undid (the undo stack)
    db.table("decisions").add_column("owners_checked", str)
    db.table("decisions").add_column("undoes", int)
    # one change per repository at a time, across processes sharing the store
    db.table("repository_claims").create({"arn": str, "holder": str, "claimed_at": str}, pk="arn")
    # a scan's holder and heartbeat: a scan whose holder died is recognised and abandoned
    db.table("scans").add_column("holder", str)
    db.table("scans").add_column("heartbeat_at", str)


@migrations()
def m006_in_use(db: Database) -> None:
    # ECS task definitions are immutable per revision ARN: their container images, read once, ever
    db.table("task_definitions").create({"arn": str, "images": str, "fetched_at": str}, pk="arn")


@migrations()
def m007_repository_generation(db: Database) -> None:
    # a repository deleted and created again has the same ARN: its creation time keeps their histories apart
    db.table("decisions").add_column("repository_created_at", str)


@migrations()
def m008_owner_decisions(db: Database) -> None:
    # a decline's reason and the person's note; what a claim or a deletion did
    db.table("decisions").add_column("reason", str)
    db.table("decisions").add_column("note", str)
    # a deleted repository's export (every image's digest, tags, times and manifest), kept before the deletion
    db.table("repository_exports").create({"id": int, "arn": str, "account_id": str, "region": str, "repository": str,
                                     "user_id": str, "taken_at": str, "content": str}, pk="id")
    # "I own this": a claim waits for an admin's approval
    db.table("ownership_claims").create({"id": int, "arn": str, "account_id": str, "region": str, "repository": str,
                                   "claimer": str, "claimed_at": str, "status": str, "decided_by": str,
                                   "decided_at": str}, pk="id")
    db.table("ownership_claims").create_index(["arn", "status"])


@migrations()
def m009_config_steps(db: Database) -> None:
    # image config blobs are immutable per digest: the Dockerfile step of each layer (their history), read once, ever;
    # steps NULL with a problem: the blob could not be used (too large, no history), which will not change either
    db.table("config_steps").create({"digest": str, "steps": str, "problem": str, "fetched_at": str}, pk="digest")


@migrations()
def m010_billing_cache(db: Database) -> None:
    # Cost Explorer charges each request and the CUR is large: one answer per source and period per UTC day
    db.table("billing_cache").create({"key": str, "day": str, "payload": str, "fetched_at": str}, pk="key")


@migrations()
def m011_account_names(db: Database) -> None:
    # a repository's account, by its name in the AWS Organization (null outside one)
    db.table("repository_snapshots").add_column("account_name", str)


@migrations()
def m015_watch(db: Database) -> None:
    # the watch: a repository's createdAt tells the repositories created since the previous scan
    db.table("repository_snapshots").add_column("created_at", str)
    # a watch finding sent to a person: at most once per period (key: kind and repository)
    db.table("watch_findings").create({"period": str, "finding": str, "user_id": str, "sent_at": str},
                                pk=("period", "finding", "user_id"))
    # a limit set through the bot: the tag value before and after (undo restores the one before; null: none)
    db.table("decisions").add_column("tag_before", str)
    db.table("decisions").add_column("tag_after", str)


@migrations()
def m016_sweep(db: Database) -> None:
    # a sweep decision's images (digest, tags, manifest, times, size, outcome), recorded before they are deleted
    db.table("decisions").add_column("images", str)
    # sweep candidates announced to their owners: deleted only once the grace period since then has passed
    db.table("sweep_announcements").create({"arn": str, "digest": str, "batch": str, "announced_at": str},
                                     pk=("arn", "digest"))
    db.table("sweep_announcements").create_index(["batch"])


@contextmanager
def _initialising(path: str) -> Iterator[None]:
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


def _retry_while_busy(call, seconds: float = 30.0) -> None:
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


@migrations()
def m017_scan_scope(db: Database) -> None:
    # what a scan covered (regions, roles, organisation, account filters): a report reuses only a scan of the
    # estate as configured now
    db.table("scans").add_column("scope", str)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


@overload
def _parse(text: str) -> datetime: ...
@overload
def _parse(text: None) -> None: ...
def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _insert_or_replace(db: Database, table: str, values: dict) -> None:
    """One row, as sqlite-utils' ``insert(replace=True)`` writes it, in one statement: sqlite-utils reads the
    table's schema first (a dozen queries a row), a third of an organisation scan's store time."""
    columns = ", ".join(f"[{name}]" for name in values)
    db.execute(f"insert or replace into [{table}] ({columns}) values ({', '.join('?' * len(values))})",
               list(values.values()))


# the store's way to write and read times, for the tables other modules keep over this database
to_iso, from_iso = _iso, _parse

class Store:
    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        with _initialising(path):
            db = self.db
            _retry_while_busy(db.enable_wal)
            migrations.apply(db)

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

    # -- manifest cache ------------------------------------------------------------------

    def get_manifests(self, digests: Iterable[str]) -> dict[str, Manifest]:
        digests = list(digests)
        found: dict[str, Manifest] = {}
        # one (digest, size) pair per blob, however many manifests list it: images share most of their layers, and
        # `size` holds a repository's manifests at once (10,000 images x 20 layers: 200,000 pairs, 30,000 distinct)
        pairs: dict[str, tuple[str, int]] = {}

        def pair(digest: str, size: int) -> tuple[str, int]:
            known = pairs.get(digest)
            if known is None or known[1] != size:
                known = pairs[digest] = (digest, size)
            return known

        for start in range(0, len(digests), _CHUNK):
            chunk = digests[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            # plain tuples, not sqlite-utils' dict rows: `size` reads hundreds of thousands of blobs through here
            for digest, media_type, blobs, children, problem in self.db.execute(
                    f"select digest, media_type, blobs, children, problem from manifests where digest in ({marks})",
                    chunk):
                found[digest] = Manifest(digest, media_type, blobs=tuple(pair(*b) for b in json.loads(blobs)),
                                         children=tuple(json.loads(children)), problem=problem)
        return found

    def put_manifests(self, manifests: Iterable[Manifest]) -> None:
        now = _iso(datetime.now(UTC))
        rows = [{"digest": m.digest, "media_type": m.media_type, "blobs": json.dumps(m.blobs),
                 "children": json.dumps(m.children), "problem": m.problem, "fetched_at": now} for m in manifests]
        if rows:
            with self.db.conn:
                self.db.table("manifests").insert_all(rows, ignore=True)

    def task_definition_images(self, arns: Iterable[str]) -> dict[str, list[str]]:
        arns = list(arns)
        found: dict[str, list[str]] = {}
        for start in range(0, len(arns), _CHUNK):
            chunk = arns[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select arn, images from task_definitions where arn in ({marks})", chunk):
                found[row["arn"]] = json.loads(row["images"])
        return found

    def put_task_definition_images(self, images: dict[str, list[str]]) -> None:
        now = _iso(datetime.now(UTC))
        with self.db.conn:
            self.db.table("task_definitions").insert_all(
                [{"arn": arn, "images": json.dumps(uris), "fetched_at": now} for arn, uris in images.items()],
                ignore=True)

    def get_config_steps(self, digests: Iterable[str]) -> dict[str, tuple[tuple[str | None, ...] | None, str | None]]:
        """Config digest -> (the Dockerfile step of each layer, or None; the problem that left it unknown)."""
        digests = list(digests)
        found: dict[str, tuple[tuple[str | None, ...] | None, str | None]] = {}
        for start in range(0, len(digests), _CHUNK):
            chunk = digests[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"select * from config_steps where digest in ({marks})", chunk):
                steps = None if row["steps"] is None else tuple(json.loads(row["steps"]))
                found[row["digest"]] = (steps, row["problem"])
        return found

    def put_config_steps(self, digest: str, steps: Sequence[str | None] | None, problem: str | None) -> None:
        with self.db.conn:
            self.db.table("config_steps").insert({"digest": digest,
                                            "steps": None if steps is None else json.dumps(list(steps)),
                                            "problem": problem, "fetched_at": _iso(datetime.now(UTC))},
                                           ignore=True)

    def manifest_count(self) -> int:
        return self.db["manifests"].count

    # -- scans and snapshots ------------------------------------------------------------

    def begin_scan(self, generated_at: datetime, price_per_gb_month: float, scope: str | None = None) -> int:
        self.abandon_dead_scans()
        now = _iso(datetime.now(UTC))
        with self.db.conn:
            table = self.db.table("scans").insert({"generated_at": _iso(generated_at), "status": "running",
                                             "price_per_gb_month": price_per_gb_month, "holder": PROCESS,
                                             "heartbeat_at": now, "scope": scope})
        assert table.last_pk is not None  # the row just inserted
        return int(table.last_pk)

    def scan_scope(self, scan_id: int | None) -> str | None:
        row = self.db.execute("select scope from scans where id = ?", [scan_id]).fetchone()
        return row[0] if row else None

    def save_repository(self, scan_id: int, row: RepositoryCost, images: Sequence[Image]) -> None:
        with self._unsynced(), self.db.conn:
            if not self._beat(scan_id):  # an abandoned scan must not grow again (its rows were dropped)
                raise ScanAbandoned(f"scan {scan_id} was marked abandoned")
            _insert_or_replace(self.db, "repository_snapshots", {
                "scan_id": scan_id, "arn": row.arn, "account_id": row.account_id, "region": row.region,
                "repository": row.repository, "image_count": row.image_count,
                "tagged_image_count": row.tagged_image_count, "stored_bytes": row.stored_bytes,
                "listed_bytes": row.listed_bytes, "monthly_cost_usd": row.monthly_cost_usd,
                "last_pushed_at": _iso(row.last_pushed_at), "last_pulled_at": _iso(row.last_pulled_at),
                "unused": int(row.unused), "has_lifecycle_policy": int(row.has_lifecycle_policy),
                "lifecycle_policy": row.lifecycle_policy, "owners": json.dumps(row.owners),
                "tags": json.dumps(row.tags), "account_name": row.account_name,
                "created_at": _iso(row.created_at),
            })
            _insert_or_replace(self.db, "snapshot_images", {
                "scan_id": scan_id, "arn": row.arn, "images": json.dumps([_image_json(i) for i in images])})

    @contextmanager
    def _unsynced(self) -> Iterator[None]:
        """A scan's snapshot rows committed without waiting for the disk (WAL, synchronous=NORMAL): a power loss can
        lose only rows of a scan still running, which is abandoned anyway; the next FULL commit (finish_scan, any
        decision or backup) syncs them all. At one repository per account the fsync per row was a third of an
        organisation scan's time."""
        before = self.db.execute("PRAGMA synchronous").fetchone()[0]
        self.db.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA synchronous = {int(before)}")

    def _beat(self, scan_id: int) -> bool:
        cursor = self.db.execute("update scans set heartbeat_at = ? where id = ? and status = 'running'",
                                 [_iso(datetime.now(UTC)), scan_id])
        return cursor.rowcount == 1

    def heartbeat_scan(self, scan_id: int) -> bool:
        """Keeps a running scan alive between repositories (listing, identity checks, a huge repository)."""
        with self.db.conn:
            return self._beat(scan_id)

    def finish_scan(self, result: ScanResult, keep_images_for: int = 2, status: str = "complete") -> None:
        """Marks the scan complete and drops image lists of all but the latest scans (summaries stay). A scan of
        one account finishes with another ``status`` ("account"): only 'complete' scans are the estate's, so
        latest_scan, the comparisons and the trend never take it for one."""
        assert result.scan_id is not None, "a scan from start_scan"
        totals = self.db.execute(
            "select count(*), coalesce(sum(stored_bytes), 0), coalesce(sum(monthly_cost_usd), 0) "
            "from repository_snapshots where scan_id = ?", [result.scan_id]).fetchone()
        with self.db.conn:
            if not self._beat(result.scan_id):
                raise ScanAbandoned(f"scan {result.scan_id} was marked abandoned")
            self.db.table("scans").update(result.scan_id, {
                "status": status, "finished_at": _iso(datetime.now(UTC)),
                "partial": int(result.partial),
                "errors": json.dumps([vars(p) for p in result.errors]),
                "warnings": json.dumps([vars(p) for p in result.warnings]),
                "repository_count": totals[0], "stored_bytes": totals[1], "monthly_cost_usd": totals[2],
                "api_calls": result.api_calls, "manifests_fetched": result.manifests_fetched,
            })
        self.prune_images(keep_images_for)

    def prune_images(self, keep_images_for: int = 2) -> None:
        """Image lists stay for the latest complete scans and the scans still running, nothing else."""
        with self.db.conn:
            self.db.execute(
                "delete from snapshot_images where scan_id not in (select id from scans where status = 'running') "
                "and scan_id not in (select id from scans where status = 'complete' order by id desc limit ?)",
                [keep_images_for])

    def abandon_dead_scans(self, lease: timedelta = SCAN_LEASE) -> list[int]:
        """Scans that will never finish (their process died, or stopped beating for ``lease``) are marked
        abandoned and their rows dropped: at start-up and before every scan."""
        stale = _iso(datetime.now(UTC) - lease) or ""
        dead = [row["id"]
                for row in self.db.query("select id, holder, heartbeat_at from scans where status = 'running'")
                if _holder_is_dead(row["holder"]) or (row["heartbeat_at"] or "") < stale]
        self.abandon_scans(dead)
        return dead

    def abandon_scans(self, scan_ids: Sequence[int]) -> None:
        """Marks scans that will never finish abandoned and drops their rows."""
        if not scan_ids:
            return
        marks = ",".join("?" * len(scan_ids))
        with self.db.conn:
            self.db.execute(f"update scans set status = 'abandoned', finished_at = ? where id in ({marks})",
                            [_iso(datetime.now(UTC)), *scan_ids])
            self.db.execute(f"delete from repository_snapshots where scan_id in ({marks})", list(scan_ids))
            self.db.execute(f"delete from snapshot_images where scan_id in ({marks})", list(scan_ids))
        self.prune_images()

    def running_scan(self, lease: timedelta = SCAN_LEASE) -> int | None:
        """A scan in progress in any process (its heartbeat fresh), or None."""
        row = self.db.execute("select id from scans where status = 'running' and heartbeat_at >= ? "
                              "order by id desc limit 1",
                              [_iso(datetime.now(UTC) - lease)]).fetchone()
        return None if row is None else row[0]

    def scan_status(self, scan_id: int) -> str | None:
        row = self.db.execute("select status from scans where id = ?", [scan_id]).fetchone()
        return None if row is None else row[0]

    def latest_scan(self, before: datetime | None = None) -> ScanResult | None:
        """The newest complete scan (generated at or before ``before`` when given), ranked rows included."""
        where, params = "status = 'complete'", []
        if before is not None:
            where += " and generated_at <= ?"
            params.append(_iso(before))
        rows = list(self.db["scans"].rows_where(where, params, order_by="id desc", limit=1))
        if not rows:
            return None
        scan = rows[0]
        repositories = rank([_snapshot(r) for r in self.db["repository_snapshots"].rows_where(
            "scan_id = ?", [scan["id"]])])
        return ScanResult(
            generated_at=_parse(scan["generated_at"]), price_per_gb_month=scan["price_per_gb_month"],
            repositories=repositories,
            errors=[ScanProblem(**p) for p in json.loads(scan["errors"] or "[]")],
            warnings=[ScanProblem(**p) for p in json.loads(scan["warnings"] or "[]")],
            api_calls=scan["api_calls"] or 0, manifests_fetched=scan["manifests_fetched"] or 0,
            scan_id=scan["id"])

    def snapshot_images(self, scan_id: int | None, arn: str) -> list[Image] | None:
        row = self.db.execute("select images from snapshot_images where scan_id = ? and arn = ?",
                              [scan_id, arn]).fetchone()
        return None if row is None else [_image_from_json(i) for i in json.loads(row[0])]

    # -- policy backups and the decision log ---------------------------------------------

    def save_backup(self, ref: RepositoryRef, policy_text: str | None, reason: str) -> int:
        """Stores the current policy (or that there was none) before anything overwrites it."""
        with self.db.conn:
            table = self.db.table("policy_backups").insert({
                "arn": ref.arn, "account_id": ref.account_id, "region": ref.region, "repository": ref.name,
                "had_policy": int(policy_text is not None), "policy_text": policy_text,
                "taken_at": _iso(datetime.now(UTC)), "reason": reason})
        return cast(int, table.last_pk)  # set by the insert above

    def backup(self, backup_id: int) -> tuple[bool, str | None]:
        """(whether there was a policy, its exact text)."""
        row = self.db.table("policy_backups").get(backup_id)
        return bool(row["had_policy"]), row["policy_text"]

    def backup_count(self, arn: str) -> int:
        return self.db["policy_backups"].count_where("arn = ?", [arn])

    def record_decision(self, decision: PolicyDecision) -> PolicyDecision:
        values = {k: v for k, v in vars(decision).items() if k != "id"}
        values["at"] = _iso(decision.at)
        values["owners_checked"] = json.dumps(decision.owners_checked)
        values["repository_created_at"] = _iso(decision.repository_created_at)
        with self.db.conn:
            table = self.db.table("decisions").insert(values)
        return replace(decision, id=table.last_pk)

    def withdraw_decision(self, decision_id: int) -> None:
        """Removes a decision recorded just before a change that AWS then refused (the change never happened)."""
        with self.db.conn:
            self.db.execute("delete from decisions where id = ?", [decision_id])

    def decisions(self, arn: str | None = None, actions: tuple[str, ...] = ()) -> list[PolicyDecision]:
        """The decision log, oldest first; optionally one repository's, or some actions only."""
        where, params = [], []
        if arn:
            where.append("arn = ?")
            params.append(arn)
        if actions:
            where.append(f"action in ({','.join('?' * len(actions))})")
            params.extend(actions)
        rows = self.db["decisions"].rows_where(" and ".join(where) or None, params, order_by="id")
        return [_decision(r) for r in rows]

    def save_export(self, ref: RepositoryRef, user_id: str, content: str) -> int:
        """A repository's export, stored before it is deleted."""
        with self.db.conn:
            table = self.db.table("repository_exports").insert({
                "arn": ref.arn, "account_id": ref.account_id, "region": ref.region, "repository": ref.name,
                "user_id": user_id, "taken_at": _iso(datetime.now(UTC)), "content": content})
        return cast(int, table.last_pk)  # set by the insert above

    def add_ownership_claim(self, ref: RepositoryRef, claimer: str) -> tuple[int, bool]:
        """(the claim's id, whether it is new): one pending claim per person and repository."""
        with self.db.conn:
            pending = list(self.db["ownership_claims"].rows_where(
                "arn = ? and claimer = ? and status = 'pending'", [ref.arn, claimer], limit=1))
            if pending:
                return pending[0]["id"], False
            table = self.db.table("ownership_claims").insert({
                "arn": ref.arn, "account_id": ref.account_id, "region": ref.region, "repository": ref.name,
                "claimer": claimer, "claimed_at": _iso(datetime.now(UTC)), "status": "pending"})
        return cast(int, table.last_pk), True  # set by the insert above

    def ownership_claim(self, claim_id: int) -> dict | None:
        rows = list(self.db["ownership_claims"].rows_where("id = ?", [claim_id], limit=1))
        return rows[0] if rows else None

    def decide_ownership_claim(self, claim_id: int, status: str, decided_by: str, only_from: str = "pending") -> bool:
        """Moves a claim from ``only_from`` to ``status``; False when another decision got there first."""
        with self.db.conn:
            cursor = self.db.execute(
                "update ownership_claims set status = ?, decided_by = ?, decided_at = ? where id = ? and status = ?",
                [status, decided_by, _iso(datetime.now(UTC)), claim_id, only_from])
        return cursor.rowcount == 1

    def claim(self, key: str, holder: str, lease: timedelta = CLAIM_LEASE) -> bool:
        """True when ``holder`` may act on ``key`` (a repository ARN, or the estate's scan) now: nobody else, in
        any thread or process, holds it, or its holder stopped beating ``lease`` ago. The holder keeps it
        alive with ``refresh_claim`` and gives it back with ``release_claim``."""
        now = datetime.now(UTC)
        with self.db.conn:
            cursor = self.db.execute(
                "insert or ignore into repository_claims (arn, holder, claimed_at) values (?, ?, ?)",
                [key, holder, _iso(now)])
            if cursor.rowcount == 1:
                return True
            cursor = self.db.execute("update repository_claims set holder = ?, claimed_at = ? "
                                     "where arn = ? and claimed_at < ?", [holder, _iso(now), key, _iso(now - lease)])
        return cursor.rowcount == 1

    def refresh_claim(self, key: str, holder: str) -> bool:
        with self.db.conn:
            cursor = self.db.execute("update repository_claims set claimed_at = ? where arn = ? and holder = ?",
                                     [_iso(datetime.now(UTC)), key, holder])
        return cursor.rowcount == 1

    def claim_held(self, key: str, lease: timedelta = CLAIM_LEASE) -> bool:
        """Whether someone holds ``key`` and is alive."""
        row = self.db.execute("select 1 from repository_claims where arn = ? and claimed_at >= ?",
                              [key, _iso(datetime.now(UTC) - lease)]).fetchone()
        return row is not None

    def release_claim(self, key: str, holder: str) -> None:
        with self.db.conn:
            self.db.execute("delete from repository_claims where arn = ? and holder = ?", [key, holder])

    def claim_click(self, click_id: str) -> bool:
        """True the first time ``click_id`` is seen, by any thread or process."""
        with self.db.conn:
            cursor = self.db.execute("insert or ignore into slack_clicks (click_id, claimed_at) values (?, ?)",
                                     [click_id, _iso(datetime.now(UTC))])
        return cursor.rowcount == 1

    # -- reports ---------------------------------------------------------------------------

    def claim_period(self, period: str, claimed_by: str, lease: timedelta = timedelta(minutes=10)) -> str | None:
        """Who reports ``period``, across threads and processes. Returns None when someone else has it or it
        was posted; else how it was claimed: 'new'; 'taken over' (the holder stopped beating for ``lease``:
        it died, maybe after posting); 'maybe posted' (a post whose answer was lost: check before posting)."""
        now = datetime.now(UTC)
        with self.db.conn:
            cursor = self.db.execute(
                "insert or ignore into report_runs (period, claimed_by, claimed_at, status) "
                "values (?, ?, ?, 'claimed')",
                [period, claimed_by, _iso(now)])
            if cursor.rowcount == 1:
                return "new"
            cursor = self.db.execute(
                "update report_runs set claimed_by = ?, claimed_at = ? "
                "where period = ? and status = 'claimed' and claimed_at < ?",
                [claimed_by, _iso(now), period, _iso(now - lease)])
            if cursor.rowcount == 1:
                return "taken over"
            cursor = self.db.execute(
                "update report_runs set claimed_by = ?, claimed_at = ?, status = 'claimed' "
                "where period = ? and status = 'maybe_posted'", [claimed_by, _iso(now), period])
        return "maybe posted" if cursor.rowcount == 1 else None

    def heartbeat_period(self, period: str, claimed_by: str) -> bool:
        """Keeps a claim alive while its run is; False when it was lost."""
        with self.db.conn:
            cursor = self.db.execute("update report_runs set claimed_at = ? where period = ? and claimed_by = ? "
                                     "and status = 'claimed'", [_iso(datetime.now(UTC)), period, claimed_by])
        return cursor.rowcount == 1

    def release_period(self, period: str, claimed_by: str) -> None:
        """Gives a claim back when nothing was posted, so that a later run can report the period (only the
        holder's own claim: one taken over meanwhile belongs to someone else)."""
        with self.db.conn:
            self.db.execute("delete from report_runs where period = ? and status = 'claimed' and claimed_by = ?",
                            [period, claimed_by])

    def holds_period(self, period: str, claimed_by: str) -> bool:
        row = self.db.execute("select 1 from report_runs where period = ? and claimed_by = ? and status = 'claimed'",
                              [period, claimed_by]).fetchone()
        return row is not None

    def finish_period(self, period: str, claimed_by: str, status: str, message_ts: str | None = None,
                      error: str | None = None) -> None:
        """``status``: 'posted', or 'maybe_posted' (the request left and its answer was lost). A result always
        lands: a claim lost meanwhile must not hide that something was posted."""
        with self.db.conn:
            self.db.execute("update report_runs set status = ?, message_ts = ?, error = ?, finished_at = ?, "
                            "claimed_by = ? where period = ?", [status, message_ts, error,
                                                                _iso(datetime.now(UTC)), claimed_by, period])

    def has_reported(self) -> bool:
        """Whether a weekly report was ever posted (or may have been) from this database; the other jobs'
        periods carry a "name:" prefix, a report's period is a bare ISO time."""
        return self.db.execute("select 1 from report_runs where status in ('posted', 'maybe_posted') "
                               "and period glob '[0-9]*' limit 1").fetchone() is not None

    def period_run(self, period: str) -> dict | None:
        rows = list(self.db["report_runs"].rows_where("period = ?", [period]))
        return rows[0] if rows else None

    def claim_nudge(self, period: str, arn: str, user_id: str) -> bool:
        with self.db.conn:
            cursor = self.db.execute("insert or ignore into nudges (period, arn, user_id, sent_at) values (?, ?, ?, ?)",
                                     [period, arn, user_id, _iso(datetime.now(UTC))])
        return cursor.rowcount == 1

    def claim_finding(self, period: str, finding: str, user_id: str) -> bool:
        """True the first time ``finding`` (a watch finding's kind and repository) goes to ``user_id`` in ``period``."""
        with self.db.conn:
            cursor = self.db.execute("insert or ignore into watch_findings (period, finding, user_id, sent_at) "
                                     "values (?, ?, ?, ?)", [period, finding, user_id, _iso(datetime.now(UTC))])
        return cursor.rowcount == 1

    def release_findings(self, period: str, findings: Sequence[str], user_id: str) -> None:
        """Gives findings back when their message could not be sent: a later run sends them."""
        with self.db.conn:
            self.db.conn.executemany("delete from watch_findings where period = ? and finding = ? and user_id = ?",
                                     [(period, f, user_id) for f in findings])

    def scan_sizes_closest_to(self, moment: datetime, before_id: int
                              ) -> tuple[ScanResult, dict[str, tuple[int, float]]] | None:
        """The complete scan older than scan ``before_id`` whose time is closest to ``moment``: the scan without its
        rows, and ARN -> (stored bytes, monthly cost) of each repository (what a comparison needs, read lean)."""
        scan = self.db.execute("select id, generated_at, price_per_gb_month, errors, warnings from scans where "
                               "status = 'complete' and id < ? order by abs(julianday(generated_at) - julianday(?)), "
                               "id desc limit 1", [before_id, _iso(moment)]).fetchone()
        if scan is None:
            return None
        sizes = {arn: (stored, cost) for arn, stored, cost in self.db.execute(
            "select arn, stored_bytes, monthly_cost_usd from repository_snapshots where scan_id = ?", [scan[0]])}
        return ScanResult(generated_at=_parse(scan[1]), price_per_gb_month=scan[2], repositories=[],
                          errors=[ScanProblem(**p) for p in json.loads(scan[3] or "[]")],
                          warnings=[ScanProblem(**p) for p in json.loads(scan[4] or "[]")], scan_id=scan[0]), sizes

    def with_stale_images(self, scan_id: int, cutoff: datetime) -> set[str]:
        """ARNs of the scan's repositories holding an image neither pushed nor pulled since ``cutoff`` (SQLite reads
        the image lists: no repository's list is parsed here)."""
        rows = self.db.execute(
            "select distinct s.arn from snapshot_images s, json_each(s.images) i where s.scan_id = ? and "
            "coalesce(json_extract(i.value, '$.pushed_at'), json_extract(i.value, '$.last_pulled_at')) is not null "
            "and max(coalesce(json_extract(i.value, '$.pushed_at'), ''), "
            "coalesce(json_extract(i.value, '$.last_pulled_at'), '')) < ?", [scan_id, _iso(cutoff)])
        return {arn for (arn,) in rows}

    # -- billing cache -------------------------------------------------------------------------

    def cached_billing(self, key: str, day: str) -> str | None:
        """The answer stored for ``key`` on the UTC ``day`` (an ISO date), or None."""
        rows = list(self.db["billing_cache"].rows_where("key = ? AND day = ?", [key, day]))
        return rows[0]["payload"] if rows else None

    def cache_billing(self, key: str, day: str, payload: str) -> None:
        self.db.table("billing_cache").upsert({"key": key, "day": day, "payload": payload,
                                         "fetched_at": _iso(datetime.now(UTC))}, pk="key")

    def cost_before(self, arn: str, moment: datetime) -> float | None:
        """The repository's monthly cost in the newest complete scan at or before ``moment``."""
        row = self.db.execute(
            "select s.monthly_cost_usd from repository_snapshots s join scans c on c.id = s.scan_id "
            "where s.arn = ? and c.status = 'complete' and c.generated_at <= ? order by c.id desc limit 1",
            [arn, _iso(moment)]).fetchone()
        return None if row is None else row[0]

    def cost_trend(self, limit: int = 26) -> list[tuple[datetime, float]]:
        """(scan time, total monthly cost) of the latest complete scans, oldest first."""
        rows = self.db.execute("select generated_at, monthly_cost_usd from scans where status = 'complete' "
                               "order by id desc limit ?", [limit]).fetchall()
        return [(_parse(at), cost or 0.0) for at, cost in reversed(rows)]


def _decision(row: dict) -> PolicyDecision:
    return PolicyDecision(
        id=row["id"], repository=row["repository"], account_id=row["account_id"], region=row["region"],
        arn=row["arn"], action=row["action"], user_id=row["user_id"], source=row["source"], at=_parse(row["at"]),
        policy_before=row["policy_before"], policy_after=row["policy_after"],
        projected_monthly_savings_usd=row["projected_monthly_savings_usd"], backup_id=row["backup_id"],
        owners_checked=tuple(json.loads(row["owners_checked"] or "[]")), undoes=row["undoes"],
        repository_created_at=_parse(row["repository_created_at"]), reason=row["reason"], note=row["note"],
        tag_before=row.get("tag_before"), tag_after=row.get("tag_after"), images=row.get("images"))


def _snapshot(row: dict) -> RepositoryCost:
    return RepositoryCost(
        repository=row["repository"], account_id=row["account_id"], region=row["region"], arn=row["arn"],
        image_count=row["image_count"], tagged_image_count=row["tagged_image_count"],
        stored_bytes=row["stored_bytes"], listed_bytes=row["listed_bytes"],
        monthly_cost_usd=row["monthly_cost_usd"],
        last_pushed_at=_parse(row["last_pushed_at"]), last_pulled_at=_parse(row["last_pulled_at"]),
        unused=bool(row["unused"]), has_lifecycle_policy=bool(row["has_lifecycle_policy"]),
        lifecycle_policy=row["lifecycle_policy"], owners=tuple(json.loads(row["owners"])),
        tags=json.loads(row["tags"]), account_name=row.get("account_name"), created_at=_parse(row.get("created_at")))


def _image_json(image: Image) -> dict:
    return {"digest": image.digest, "tags": list(image.tags), "listed_bytes": image.listed_bytes,
            "pushed_at": _iso(image.pushed_at), "last_pulled_at": _iso(image.last_pulled_at),
            "media_type": image.media_type, "status": image.status, "archived_at": _iso(image.archived_at)}


def _image_from_json(data: dict) -> Image:
    return Image(digest=data["digest"], tags=tuple(data["tags"]), listed_bytes=data["listed_bytes"],
                 pushed_at=_parse(data["pushed_at"]), last_pulled_at=_parse(data["last_pulled_at"]),
                 media_type=data["media_type"], status=data["status"], archived_at=_parse(data["archived_at"]))
