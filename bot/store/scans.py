"""Scans and their per-repository snapshots over time (``scans``, ``repository_snapshots``, ``snapshot_images``):
a scan's life (begun, kept alive, finished or abandoned) and the reads over its history."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ..core.analysis import rank
from ..core.models import Image, RepositoryCost, ScanProblem, ScanResult
from ..errors import ScanAbandoned
from .database import Tables, from_iso, insert_or_replace, to_iso
from .holders import PROCESS, SCAN_LEASE, holder_is_dead


class Scans(Tables):
    """A scan is begun by one process, kept alive by its heartbeat while it saves a snapshot per repository, and
    finished (or abandoned when its holder dies); only complete scans are the estate's history."""

    def begin_scan(self, generated_at: datetime, price_per_gb_month: float, scope: str | None = None) -> int:
        self.abandon_dead_scans()
        now = to_iso(datetime.now(UTC))
        with self.db.conn:
            table = self.db.table("scans").insert({"generated_at": to_iso(generated_at), "status": "running",
                                             "price_per_gb_month": price_per_gb_month, "holder": PROCESS,
                                             "heartbeat_at": now, "scope": scope})
        assert table.last_pk is not None  # the row just inserted
        return int(table.last_pk)

    def scan_scope(self, scan_id: int | None) -> str | None:
        row = self.db.execute("select scope from scans where id = ?", [scan_id]).fetchone()
        return row[0] if row else None

    def save_repository(self, scan_id: int, row: RepositoryCost, images: Sequence[Image]) -> None:
        self.save_repositories(scan_id, [(row, images)])

    def save_repositories(self, scan_id: int, saved: Sequence[tuple[RepositoryCost, Sequence[Image]]]) -> None:
        """Repositories read by a running scan, with their images, in one transaction."""
        with self.unsynced_transaction():
            if not self._beat(scan_id):  # an abandoned scan must not grow again (its rows were dropped)
                raise ScanAbandoned(f"scan {scan_id} was marked abandoned")
            for row, images in saved:
                insert_or_replace(self.db, "repository_snapshots", {
                    "scan_id": scan_id, "arn": row.arn, "account_id": row.account_id, "region": row.region,
                    "repository": row.repository, "image_count": row.image_count,
                    "tagged_image_count": row.tagged_image_count, "stored_bytes": row.stored_bytes,
                    "listed_bytes": row.listed_bytes, "monthly_cost_usd": row.monthly_cost_usd,
                    "last_pushed_at": to_iso(row.last_pushed_at), "last_pulled_at": to_iso(row.last_pulled_at),
                    "unused": int(row.unused), "has_lifecycle_policy": int(row.has_lifecycle_policy),
                    "lifecycle_policy": row.lifecycle_policy, "owners": json.dumps(row.owners),
                    "tags": json.dumps(row.tags), "account_name": row.account_name,
                    "created_at": to_iso(row.created_at),
                })
                insert_or_replace(self.db, "snapshot_images", {
                    "scan_id": scan_id, "arn": row.arn, "images": json.dumps([_image_json(i) for i in images])})

    def _beat(self, scan_id: int) -> bool:
        cursor = self.db.execute("update scans set heartbeat_at = ? where id = ? and status = 'running'",
                                 [to_iso(datetime.now(UTC)), scan_id])
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
                "status": status, "finished_at": to_iso(datetime.now(UTC)),
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
        stale = to_iso(datetime.now(UTC) - lease) or ""
        dead = [row["id"]
                for row in self.db.query("select id, holder, heartbeat_at from scans where status = 'running'")
                if holder_is_dead(row["holder"]) or (row["heartbeat_at"] or "") < stale]
        self.abandon_scans(dead)
        return dead

    def abandon_scans(self, scan_ids: Sequence[int]) -> None:
        """Marks scans that will never finish abandoned and drops their rows."""
        if not scan_ids:
            return
        marks = ",".join("?" * len(scan_ids))
        with self.db.conn:
            self.db.execute(f"update scans set status = 'abandoned', finished_at = ? where id in ({marks})",
                            [to_iso(datetime.now(UTC)), *scan_ids])
            self.db.execute(f"delete from repository_snapshots where scan_id in ({marks})", list(scan_ids))
            self.db.execute(f"delete from snapshot_images where scan_id in ({marks})", list(scan_ids))
        self.prune_images()

    def running_scan(self, lease: timedelta = SCAN_LEASE) -> int | None:
        """A scan in progress in any process (its heartbeat fresh), or None."""
        row = self.db.execute("select id from scans where status = 'running' and heartbeat_at >= ? "
                              "order by id desc limit 1",
                              [to_iso(datetime.now(UTC) - lease)]).fetchone()
        return None if row is None else row[0]

    def scan_status(self, scan_id: int) -> str | None:
        row = self.db.execute("select status from scans where id = ?", [scan_id]).fetchone()
        return None if row is None else row[0]

    def latest_scan(self, before: datetime | None = None) -> ScanResult | None:
        """The newest complete scan (generated at or before ``before`` when given), ranked rows included."""
        where, params = "status = 'complete'", []
        if before is not None:
            where += " and generated_at <= ?"
            params.append(to_iso(before))
        rows = list(self.db["scans"].rows_where(where, params, order_by="id desc", limit=1))
        if not rows:
            return None
        scan = rows[0]
        repositories = rank([_snapshot(r) for r in self.db["repository_snapshots"].rows_where(
            "scan_id = ?", [scan["id"]])])
        return ScanResult(
            generated_at=from_iso(scan["generated_at"]), price_per_gb_month=scan["price_per_gb_month"],
            repositories=repositories,
            errors=[ScanProblem(**p) for p in json.loads(scan["errors"] or "[]")],
            warnings=[ScanProblem(**p) for p in json.loads(scan["warnings"] or "[]")],
            api_calls=scan["api_calls"] or 0, manifests_fetched=scan["manifests_fetched"] or 0,
            scan_id=scan["id"])

    def snapshot_images(self, scan_id: int | None, arn: str) -> list[Image] | None:
        row = self.db.execute("select images from snapshot_images where scan_id = ? and arn = ?",
                              [scan_id, arn]).fetchone()
        return None if row is None else [_image_from_json(i) for i in json.loads(row[0])]

    def scan_sizes_closest_to(self, moment: datetime, before_id: int
                              ) -> tuple[ScanResult, dict[str, tuple[int, float]]] | None:
        """The complete scan older than scan ``before_id`` whose time is closest to ``moment``: the scan without its
        rows, and ARN -> (stored bytes, monthly cost) of each repository (what a comparison needs, read lean)."""
        scan = self.db.execute("select id, generated_at, price_per_gb_month, errors, warnings from scans where "
                               "status = 'complete' and id < ? order by abs(julianday(generated_at) - julianday(?)), "
                               "id desc limit 1", [before_id, to_iso(moment)]).fetchone()
        if scan is None:
            return None
        sizes = {arn: (stored, cost) for arn, stored, cost in self.db.execute(
            "select arn, stored_bytes, monthly_cost_usd from repository_snapshots where scan_id = ?", [scan[0]])}
        return ScanResult(generated_at=from_iso(scan[1]), price_per_gb_month=scan[2], repositories=[],
                          errors=[ScanProblem(**p) for p in json.loads(scan[3] or "[]")],
                          warnings=[ScanProblem(**p) for p in json.loads(scan[4] or "[]")], scan_id=scan[0]), sizes

    def with_stale_images(self, scan_id: int, cutoff: datetime) -> set[str]:
        """ARNs of the scan's repositories holding an image neither pushed nor pulled since ``cutoff`` (SQLite reads
        the image lists: no repository's list is parsed here)."""
        rows = self.db.execute(
            "select distinct s.arn from snapshot_images s, json_each(s.images) i where s.scan_id = ? and "
            "coalesce(json_extract(i.value, '$.pushed_at'), json_extract(i.value, '$.last_pulled_at')) is not null "
            "and max(coalesce(json_extract(i.value, '$.pushed_at'), ''), "
            "coalesce(json_extract(i.value, '$.last_pulled_at'), '')) < ?", [scan_id, to_iso(cutoff)])
        return {arn for (arn,) in rows}

    def cost_before(self, arn: str, moment: datetime) -> float | None:
        """The repository's monthly cost in the newest complete scan at or before ``moment``."""
        row = self.db.execute(
            "select s.monthly_cost_usd from repository_snapshots s join scans c on c.id = s.scan_id "
            "where s.arn = ? and c.status = 'complete' and c.generated_at <= ? order by c.id desc limit 1",
            [arn, to_iso(moment)]).fetchone()
        return None if row is None else row[0]

    def cost_trend(self, limit: int = 26) -> list[tuple[datetime, float]]:
        """(scan time, total monthly cost) of the latest complete scans, oldest first."""
        rows = self.db.execute("select generated_at, monthly_cost_usd from scans where status = 'complete' "
                               "order by id desc limit ?", [limit]).fetchall()
        return [(from_iso(at), cost or 0.0) for at, cost in reversed(rows)]


def _snapshot(row: dict) -> RepositoryCost:
    return RepositoryCost(
        repository=row["repository"], account_id=row["account_id"], region=row["region"], arn=row["arn"],
        image_count=row["image_count"], tagged_image_count=row["tagged_image_count"],
        stored_bytes=row["stored_bytes"], listed_bytes=row["listed_bytes"],
        monthly_cost_usd=row["monthly_cost_usd"],
        last_pushed_at=from_iso(row["last_pushed_at"]), last_pulled_at=from_iso(row["last_pulled_at"]),
        unused=bool(row["unused"]), has_lifecycle_policy=bool(row["has_lifecycle_policy"]),
        lifecycle_policy=row["lifecycle_policy"], owners=tuple(json.loads(row["owners"])),
        tags=json.loads(row["tags"]), account_name=row.get("account_name"), created_at=from_iso(row.get("created_at")))


def _image_json(image: Image) -> dict:
    return {"digest": image.digest, "tags": list(image.tags), "listed_bytes": image.listed_bytes,
            "pushed_at": to_iso(image.pushed_at), "last_pulled_at": to_iso(image.last_pulled_at),
            "media_type": image.media_type, "status": image.status, "archived_at": to_iso(image.archived_at)}


def _image_from_json(data: dict) -> Image:
    return Image(digest=data["digest"], tags=tuple(data["tags"]), listed_bytes=data["listed_bytes"],
                 pushed_at=from_iso(data["pushed_at"]), last_pulled_at=from_iso(data["last_pulled_at"]),
                 media_type=data["media_type"], status=data["status"], archived_at=from_iso(data["archived_at"]))
