"""The only package that uses SQLite: one database, its tables in groups, one module per group.

``Store`` is the composition over the one database: the connections (one per thread: the scheduler, Bolt's
listener threads and the scan workers all use the store at once; WAL journaling and short transactions), the
migrations applied once per process under a file lock, and a group object per table group (``store.scans``,
``store.decision_log``...). Its methods of the same names delegate to the groups, so callers need not know which
group holds what. Other modules keep their own tables over the same database (``store.db``) and write times with
``to_iso`` and ``from_iso``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from ..core.models import Image, Manifest, PolicyDecision, RepositoryCost, RepositoryRef, ScanResult
from .billing import BillingCache
from .claims import Claims
from .database import Connections, from_iso, initialising, retry_while_busy, to_iso
from .decision_log import DecisionLog
from .deliveries import Deliveries
from .holders import CLAIM_LEASE, HEARTBEAT_SECONDS, PROCESS, SCAN_LEASE
from .manifests import Manifests
from .ownership import OwnershipClaims
from .periods import Periods
from .scans import Scans
from .schema import migrations
from .sqlite import Database
from .task_definitions import TaskDefinitions

__all__ = ["CLAIM_LEASE", "HEARTBEAT_SECONDS", "PROCESS", "SCAN_LEASE", "Store", "from_iso", "migrations", "to_iso"]

_iso = to_iso  # the name tests and older callers import


class Store:
    def __init__(self, path: str):
        self.path = path
        self.connections = Connections(path)
        with initialising(path):
            db = self.db
            retry_while_busy(db.enable_wal)
            migrations.apply(db)
        self.scans = Scans(self.connections)
        self.manifests = Manifests(self.connections)
        self.task_definitions = TaskDefinitions(self.connections)
        self.billing = BillingCache(self.connections)
        self.decision_log = DecisionLog(self.connections)
        self.ownership = OwnershipClaims(self.connections)
        self.claims = Claims(self.connections)
        self.periods = Periods(self.connections)
        self.deliveries = Deliveries(self.connections)

    @property
    def db(self) -> Database:
        """The calling thread's connection."""
        return self.connections.db

    def close(self) -> None:
        self.connections.close()

    # -- scans and snapshots ---------------------------------------------------------------------------------

    def begin_scan(self, generated_at: datetime, price_per_gb_month: float, scope: str | None = None) -> int:
        return self.scans.begin_scan(generated_at, price_per_gb_month, scope)

    def scan_scope(self, scan_id: int | None) -> str | None:
        return self.scans.scan_scope(scan_id)

    def save_repository(self, scan_id: int, row: RepositoryCost, images: Sequence[Image]) -> None:
        return self.scans.save_repository(scan_id, row, images)

    def save_repositories(self, scan_id: int, saved: Sequence[tuple[RepositoryCost, Sequence[Image]]]) -> None:
        return self.scans.save_repositories(scan_id, saved)

    def heartbeat_scan(self, scan_id: int) -> bool:
        return self.scans.heartbeat_scan(scan_id)

    def finish_scan(self, result: ScanResult, keep_images_for: int = 2, status: str = 'complete') -> None:
        return self.scans.finish_scan(result, keep_images_for, status)

    def prune_images(self, keep_images_for: int = 2) -> None:
        return self.scans.prune_images(keep_images_for)

    def abandon_dead_scans(self, lease: timedelta = SCAN_LEASE) -> list[int]:
        return self.scans.abandon_dead_scans(lease)

    def abandon_scans(self, scan_ids: Sequence[int]) -> None:
        return self.scans.abandon_scans(scan_ids)

    def running_scan(self, lease: timedelta = SCAN_LEASE) -> int | None:
        return self.scans.running_scan(lease)

    def scan_status(self, scan_id: int) -> str | None:
        return self.scans.scan_status(scan_id)

    def latest_scan(self, before: datetime | None = None) -> ScanResult | None:
        return self.scans.latest_scan(before)

    def snapshot_images(self, scan_id: int | None, arn: str) -> list[Image] | None:
        return self.scans.snapshot_images(scan_id, arn)

    def scan_sizes_closest_to(self, moment: datetime, before_id: int
                              ) -> tuple[ScanResult, dict[str, tuple[int, float]]] | None:
        return self.scans.scan_sizes_closest_to(moment, before_id)

    def with_stale_images(self, scan_id: int, cutoff: datetime) -> set[str]:
        return self.scans.with_stale_images(scan_id, cutoff)

    def cost_before(self, arn: str, moment: datetime) -> float | None:
        return self.scans.cost_before(arn, moment)

    def cost_trend(self, limit: int = 26) -> list[tuple[datetime, float]]:
        return self.scans.cost_trend(limit)

    # -- manifests and config steps --------------------------------------------------------------------------

    def get_manifests(self, digests: Iterable[str]) -> dict[str, Manifest]:
        return self.manifests.get_manifests(digests)

    def put_manifests(self, manifests: Iterable[Manifest]) -> None:
        return self.manifests.put_manifests(manifests)

    def get_config_steps(self, digests: Iterable[str]) -> dict[str, tuple[tuple[str | None, ...] | None, str | None]]:
        return self.manifests.get_config_steps(digests)

    def put_config_steps(self, digest: str, steps: Sequence[str | None] | None, problem: str | None) -> None:
        return self.manifests.put_config_steps(digest, steps, problem)

    def manifest_count(self) -> int:
        return self.manifests.manifest_count()

    # -- task definitions ------------------------------------------------------------------------------------

    def task_definition_images(self, arns: Iterable[str]) -> dict[str, list[str]]:
        return self.task_definitions.task_definition_images(arns)

    def put_task_definition_images(self, images: dict[str, list[str]]) -> None:
        return self.task_definitions.put_task_definition_images(images)

    # -- the billing cache -----------------------------------------------------------------------------------

    def cached_billing(self, key: str, day: str) -> str | None:
        return self.billing.cached_billing(key, day)

    def cache_billing(self, key: str, day: str, payload: str) -> None:
        return self.billing.cache_billing(key, day, payload)

    # -- policy backups, exports and the decision log --------------------------------------------------------

    def save_backup(self, ref: RepositoryRef, policy_text: str | None, reason: str) -> int:
        return self.decision_log.save_backup(ref, policy_text, reason)

    def backup(self, backup_id: int) -> tuple[bool, str | None]:
        return self.decision_log.backup(backup_id)

    def backup_count(self, arn: str) -> int:
        return self.decision_log.backup_count(arn)

    def record_decision(self, decision: PolicyDecision) -> PolicyDecision:
        return self.decision_log.record_decision(decision)

    def withdraw_decision(self, decision_id: int) -> None:
        return self.decision_log.withdraw_decision(decision_id)

    def decisions(self, arn: str | None = None, actions: tuple[str, ...]=()) -> list[PolicyDecision]:
        return self.decision_log.decisions(arn, actions)

    def save_export(self, ref: RepositoryRef, user_id: str, content: str) -> int:
        return self.decision_log.save_export(ref, user_id, content)

    # -- ownership claims ------------------------------------------------------------------------------------

    def add_ownership_claim(self, ref: RepositoryRef, claimer: str) -> tuple[int, bool]:
        return self.ownership.add_ownership_claim(ref, claimer)

    def ownership_claim(self, claim_id: int) -> dict | None:
        return self.ownership.ownership_claim(claim_id)

    def decide_ownership_claim(self, claim_id: int, status: str, decided_by: str, only_from: str = 'pending') -> bool:
        return self.ownership.decide_ownership_claim(claim_id, status, decided_by, only_from)

    # -- claims on a repository or the scan ------------------------------------------------------------------

    def claim(self, key: str, holder: str, lease: timedelta = CLAIM_LEASE) -> bool:
        return self.claims.claim(key, holder, lease)

    def refresh_claim(self, key: str, holder: str) -> bool:
        return self.claims.refresh_claim(key, holder)

    def claim_held(self, key: str, lease: timedelta = CLAIM_LEASE) -> bool:
        return self.claims.claim_held(key, lease)

    def release_claim(self, key: str, holder: str) -> None:
        return self.claims.release_claim(key, holder)

    # -- scheduled runs by period ----------------------------------------------------------------------------

    def claim_period(self, period: str, claimed_by: str, lease: timedelta = timedelta(minutes=10)) -> str | None:
        return self.periods.claim_period(period, claimed_by, lease)

    def heartbeat_period(self, period: str, claimed_by: str) -> bool:
        return self.periods.heartbeat_period(period, claimed_by)

    def release_period(self, period: str, claimed_by: str) -> None:
        return self.periods.release_period(period, claimed_by)

    def holds_period(self, period: str, claimed_by: str) -> bool:
        return self.periods.holds_period(period, claimed_by)

    def finish_period(self, period: str, claimed_by: str, status: str, message_ts: str | None = None,
                      error: str | None = None) -> None:
        return self.periods.finish_period(period, claimed_by, status, message_ts, error)

    def has_reported(self) -> bool:
        return self.periods.has_reported()

    def period_run(self, period: str) -> dict | None:
        return self.periods.period_run(period)

    # -- exactly-once records --------------------------------------------------------------------------------

    def claim_click(self, click_id: str) -> bool:
        return self.deliveries.claim_click(click_id)

    def claim_nudge(self, period: str, arn: str, user_id: str) -> bool:
        return self.deliveries.claim_nudge(period, arn, user_id)

    def claim_finding(self, period: str, finding: str, user_id: str) -> bool:
        return self.deliveries.claim_finding(period, finding, user_id)

    def release_findings(self, period: str, findings: Sequence[str], user_id: str) -> None:
        return self.deliveries.release_findings(period, findings, user_id)
