"""The SQLite store: migrations, snapshots over time, the manifest cache, concurrent use."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from bot.core.models import Image, Manifest, ScanResult
from bot.store import Store, migrations
from tests.helpers.rows import row

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _scan(store: Store, when: datetime, rows, images=()) -> ScanResult:
    scan_id = store.begin_scan(when, 0.1)
    for r in rows:
        store.save_repository(scan_id, r, list(images))
    result = ScanResult(when, 0.1, rows, [], [], scan_id=scan_id)
    store.finish_scan(result)
    return result


def test_migrations_apply_once(tmp_path):
    path = str(tmp_path / "s.db")
    Store(path).close()
    store = Store(path)
    assert [m.name for m in migrations.applied(store.db)] == [
        "m001_inventory",
        "m002_policy_changes",
        "m003_slack_clicks",
        "m004_report_runs",
        "m005_trust",
        "m006_in_use",
        "m007_repository_generation",
        "m008_owner_decisions",
        "m009_config_steps",
        "m010_billing_cache",
        "m011_account_names",
        "m015_watch",
        "m016_sweep",
        "m017_scan_scope",
    ]
    assert migrations.pending(store.db) == []
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_snapshots_are_kept_over_time_and_read_back_ranked(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    image = Image("sha256:a", ("v1", "latest"), 10, T0, T0 + timedelta(days=1), "application/x", "ACTIVE")
    _scan(store, T0, [row("a", 5), row("b", 9)], [image])
    _scan(store, T0 + timedelta(days=7), [row("a", 50), row("b", 9)], [image])
    latest = store.latest_scan()
    assert [r.repository for r in latest.repositories] == ["a", "b"]
    assert latest.repositories[0].stored_bytes == 50
    previous = store.latest_scan(before=latest.generated_at - timedelta(days=6))
    assert previous.generated_at == T0 and previous.repositories[0].repository == "b"
    assert store.snapshot_images(latest.scan_id, latest.repositories[0].arn) == [image]


def test_an_unfinished_scan_is_not_the_latest(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    _scan(store, T0, [row("a", 5)])
    store.begin_scan(T0 + timedelta(days=1), 0.1)  # crashed half-way
    assert store.latest_scan().generated_at == T0


def test_image_lists_are_pruned_to_the_latest_scans_but_summaries_stay(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    image = Image("sha256:a", (), 10, T0)
    scans = [_scan(store, T0 + timedelta(days=7 * n), [row("a", n)], [image]) for n in range(4)]
    assert store.snapshot_images(scans[0].scan_id, row("a", 0).arn) is None
    assert store.snapshot_images(scans[3].scan_id, row("a", 0).arn) == [image]
    assert store.db["repository_snapshots"].count == 4


def test_manifest_cache_round_trip_and_immutability(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    manifests = [Manifest(f"sha256:{n}", "m", blobs=(("sha256:l", 5), (f"sha256:c{n}", n))) for n in range(1200)]
    store.put_manifests(manifests)
    store.put_manifests([Manifest("sha256:0", "m", problem="changed?")])  # a digest never changes: ignored
    found = store.get_manifests(f"sha256:{n}" for n in range(0, 1300))
    assert len(found) == 1200 and found["sha256:7"] == manifests[7]
    assert found["sha256:0"].problem is None


def test_connections_of_finished_threads_are_closed(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    for _ in range(5):  # five scans' worth of short-lived worker threads
        threads = [threading.Thread(target=lambda: store.get_manifests(["sha256:x"])) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    store.get_manifests(["sha256:x"])  # a new connection sweeps the ended threads' ones
    assert len(store.connections._connections) <= 17


def test_threads_share_the_store(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    scan_id = store.begin_scan(T0, 0.1)
    errors = []

    def work(n: int) -> None:
        try:
            for k in range(25):
                store.put_manifests([Manifest(f"sha256:{n}-{k}", "m", blobs=(("sha256:x", 1),))])
                store.save_repository(scan_id, row(f"r{n}-{k}", k), [])
                store.get_manifests([f"sha256:{n}-{k}"])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.db["repository_snapshots"].count == 200 and store.manifest_count() == 200


def test_processes_starting_together_on_a_fresh_database_all_start(tmp_path):
    """The Slack app, a cron `guard` and a second replica starting at once: WAL and the migrations are set up
    by one process at a time, none dies with "database is locked". 4 CLI processes, 10 fresh databases."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for attempt in range(10):
        env = {**os.environ, "ECR_COST_DB": str(tmp_path / f"fresh-{attempt}.db")}
        processes = [subprocess.Popen([sys.executable, "-m", "bot", "decisions", "--format", "json"], env=env,
                                      cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(4)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
        assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
        assert all(out.strip() == "[]" for _, out, _ in results)
        store = Store(env["ECR_COST_DB"])
        try:
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert migrations.pending(store.db) == [] and len(migrations.applied(store.db)) == len(
                {m.name for m in migrations.applied(store.db)})  # each applied once
        finally:
            store.close()


def test_snapshot_rows_skip_the_fsync_and_every_other_write_keeps_it(tmp_path):
    """Rows of a running scan are committed with synchronous=NORMAL (the next FULL commit syncs them); the
    connection is back to its own setting after each, so decisions and backups still wait for the disk."""
    store = Store(str(tmp_path / "s.db"))
    level = lambda: store.db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
    assert level() == 2  # FULL: SQLite's default, which every other write keeps
    scan_id = store.begin_scan(T0, 0.1)
    inside: list[int] = []
    original = store.scans._beat
    store.scans._beat = lambda scan: inside.append(level()) or original(scan)  # type: ignore[method-assign]
    store.save_repository(scan_id, row("a", 5), [])
    store.scans._beat = original  # type: ignore[method-assign]
    assert inside == [1] and level() == 2  # NORMAL inside the snapshot's transaction only
    store.finish_scan(ScanResult(T0, 0.1, [row("a", 5)], [], [], scan_id=scan_id))
    assert [r.repository for r in store.latest_scan().repositories] == ["a"]
    # inside a transaction SQLite refuses to change the level: the commit simply stays FULL
    from bot.store.database import unsynced

    store.db.conn.execute("begin")
    store.db.execute("insert into scans (generated_at, status) values ('2026-01-01T00:00:00Z', 'abandoned')")
    with unsynced(store.db):
        assert store.db.conn.in_transaction and level() == 2
    store.db.conn.commit()
    # the manifest cache (read again if lost) is written the same way, once per digest
    from bot.core.models import Manifest

    manifest = Manifest("sha256:m", "application/vnd.oci.image.manifest.v1+json", blobs=(("sha256:l", 7),))
    store.put_manifests([manifest])
    store.put_manifests([manifest, Manifest("sha256:n", manifest.media_type, problem="unreadable")])
    assert level() == 2 and store.get_manifests(["sha256:m", "sha256:n"]) == {
        "sha256:m": manifest, "sha256:n": Manifest("sha256:n", manifest.media_type, problem="unreadable")}


def test_the_table_groups_share_one_database_and_one_connection_per_thread(tmp_path):
    """``Store`` composes one group per table group over the same connections: what one group writes the
    store's own names read, in the same transaction handling, and a thread has one connection whichever group
    it goes through; close ends them all."""
    store = Store(str(tmp_path / "s.db"))
    groups = [store.scans, store.manifests, store.task_definitions, store.billing, store.decision_log,
              store.ownership, store.claims, store.periods, store.deliveries]
    assert all(group.db is store.db for group in groups)
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(store.scans.db is store.claims.db is not None))
    worker.start()
    worker.join()
    assert seen == [True] and len(store.connections._connections) == 2
    scan = _scan(store, T0, [row("a", 5)])
    assert store.scans.latest_scan() == store.latest_scan() and store.latest_scan().scan_id == scan.scan_id
    assert store.claims.claim("estate", "me") and store.claim_held("estate") and not store.claim("estate", "you")
    assert store.deliveries.claim_click("c1") and not store.claim_click("c1")
    store.billing.cache_billing("k", "2026-11-02", "{}")
    assert store.cached_billing("k", "2026-11-02") == "{}"
    store.close()
    assert store.connections._connections == []


def test_a_scan_stores_its_repositories_in_bounded_batches(tmp_path, monkeypatch):
    """The scan saves what it read in groups (one transaction each), never more than SAVE_REPOSITORIES or
    SAVE_IMAGES at once, the rest when it ends; an abandoned scan refuses the next group."""
    import pytest

    from bot import scans
    from bot.errors import ScanAbandoned

    store = Store(str(tmp_path / "s.db"))
    scan_id = store.begin_scan(T0, 0.1)
    saved: list[int] = []
    original = store.save_repositories
    monkeypatch.setattr(store, "save_repositories", lambda sid, group: saved.append(len(group)) or original(sid, group))
    monkeypatch.setattr(scans, "SAVE_SECONDS", 3600.0)
    unsaved = scans.UnsavedRepositories(store, scan_id)
    image = Image("sha256:i", ("v1",), 10, T0, None)
    for n in range(scans.SAVE_REPOSITORIES + 5):
        unsaved.add(row(f"r{n}", 1), [image])
    assert saved == [scans.SAVE_REPOSITORIES]
    unsaved.save()
    assert saved == [scans.SAVE_REPOSITORIES, 5]
    unsaved.add(row("big", 1), [image] * scans.SAVE_IMAGES)  # one huge repository is stored at once
    assert saved[-1] == 1
    count = store.db.execute("select count(*) from repository_snapshots where scan_id = ?", [scan_id]).fetchone()[0]
    assert count == scans.SAVE_REPOSITORIES + 6
    store.abandon_scans([scan_id])
    unsaved.add(row("late", 1), [])
    with pytest.raises(ScanAbandoned):
        unsaved.save()
    assert store.db.execute("select count(*) from repository_snapshots where scan_id = ?", [scan_id]).fetchone()[0] == 0
