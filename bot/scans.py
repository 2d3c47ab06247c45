"""Scans and their locking: collecting the estate (or one account), one scan at a time across threads and
processes, and which stored scan answers a request (the latest, a recent one for the report, or a new one).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from .aws.ecr import EcrCollector
from .config import Settings
from .core.analysis import rank
from .core.cost import price_repository
from .core.models import Image, RepositoryCost, RepositoryInventory, RepositoryRef, ScanProblem, ScanResult
from .errors import EstateUnreadable, ScanBusy
from .gate import Gate
from .heartbeat import heartbeat
from .store import HEARTBEAT_SECONDS, PROCESS, SCAN_LEASE, Store

ACCOUNT_SCAN = "account"  # the status of a finished scan of one account: never read as the estate's latest scan
ESTATE_SCAN = "scan:estate"  # the claim a scan holds: one scan of the estate at a time, across processes
WAIT_FOR_OTHER_SCAN = 30 * 60.0  # seconds a request waits for a scan another process is running
# Repositories read are stored together, up to these bounds: a transaction each held the reading loop (and with it
# the workers' next requests) for 8-11 ms across an organisation, mostly waiting for the GIL between statements
SAVE_REPOSITORIES, SAVE_IMAGES, SAVE_SECONDS = 32, 10_000, 1.0


def ref_of(row: RepositoryCost) -> RepositoryRef:
    """A scanned repository's reference, as the changes take it."""
    return RepositoryRef(row.account_id, row.region, row.repository, row.arn)


class UnsavedRepositories:
    """A scan's repositories read and not yet stored: saved together once SAVE_REPOSITORIES or SAVE_IMAGES of them
    wait, or SAVE_SECONDS after the first, so memory still follows the work in flight, not the estate."""

    def __init__(self, store: Store, scan_id: int):
        self._store, self._scan_id = store, scan_id
        self._waiting: list[tuple[RepositoryCost, list[Image]]] = []
        self._images, self._since = 0, 0.0

    def add(self, row: RepositoryCost, images: list[Image]) -> None:
        if not self._waiting:
            self._since = time.monotonic()
        self._waiting.append((row, images))
        self._images += len(images)
        if (len(self._waiting) >= SAVE_REPOSITORIES or self._images >= SAVE_IMAGES
                or time.monotonic() - self._since >= SAVE_SECONDS):
            self.save()

    def save(self) -> None:
        if self._waiting:
            self._store.save_repositories(self._scan_id, self._waiting)
        self._waiting, self._images = [], 0


class ScanService:
    def __init__(self, store: Store, collector: EcrCollector, gate: Gate, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep):
        self._store = store
        self._collector = collector
        self._settings = settings
        self._gate = gate
        self._clock = clock
        self._sleep = sleep
        self._scan_lock = threading.Lock()

    def scan(self, now: datetime | None = None) -> ScanResult:
        """Collects the estate now. One scan at a time across threads and processes (a claim in the store): a
        caller that finds another scan under way waits for it (bounded) and gets its result. Raises
        EstateUnreadable when not one account could be read."""
        holder = f"{PROCESS}:{uuid.uuid4().hex}"
        if not self._store.claim(ESTATE_SCAN, holder, lease=SCAN_LEASE):
            return self._wait_for_other_scan()
        try:
            return self._scan(now or self._clock(), holder)
        finally:
            self._store.release_claim(ESTATE_SCAN, holder)

    def scan_account(self, account_id: str, now: datetime | None = None) -> ScanResult:
        """Collects one account now (every region configured; no other account is entered). Stored as an account
        scan, never as a scan of the estate: the report, `repo`, the guard and the sweep keep using the latest full
        scan. One scan of an account at a time; raises ScanBusy when another is under way."""
        holder, key = f"{PROCESS}:{uuid.uuid4().hex}", f"{ESTATE_SCAN}:{account_id}"
        if not self._store.claim(key, holder, lease=SCAN_LEASE):
            raise ScanBusy(f"a scan of account {account_id} is already running; try again when it ends")
        try:
            return self._scan(now or self._clock(), holder, account_id)
        finally:
            self._store.release_claim(key, holder)

    def _wait_for_other_scan(self) -> ScanResult:
        started = self._store.latest_scan()
        deadline = time.monotonic() + WAIT_FOR_OTHER_SCAN
        while self._store.claim_held(ESTATE_SCAN, lease=SCAN_LEASE):
            if time.monotonic() > deadline:
                raise ScanBusy("another scan has been running for 30 minutes; try again later")
            self._sleep(1.0)
        latest = self._store.latest_scan()
        if latest is None or (started is not None and latest.scan_id == started.scan_id):
            return self.scan()  # the other scan failed: this caller scans itself
        return latest

    def _scan(self, now: datetime, holder: str, account: str | None = None) -> ScanResult:
        """Saves each repository as it arrives (memory follows repositories, not images); one heartbeat keeps the
        scan and its claim alive between repositories. ``account``: that account alone (an account scan)."""
        scope = self.scan_scope() if account is None else json.dumps({"account": account}, sort_keys=True)
        scan_id = self._store.begin_scan(now, self._settings.price_per_gb_month, scope)
        claim = ESTATE_SCAN if account is None else f"{ESTATE_SCAN}:{account}"

        def beat() -> bool:
            claimed = self._store.refresh_claim(claim, holder)
            return self._store.heartbeat_scan(scan_id) and claimed

        with heartbeat(beat, HEARTBEAT_SECONDS, "scan-heartbeat"):
            return self._collect(scan_id, now, account)

    def _collect(self, scan_id: int, now: datetime, account: str | None = None) -> ScanResult:
        calls_before, fetched_before = self._collector.api_calls, self._collector.manifests_fetched
        notices_before = len(self._collector.notices)
        rows: list[RepositoryCost] = []
        errors: list[ScanProblem] = []
        warnings: list[ScanProblem] = []
        unsaved = UnsavedRepositories(self._store, scan_id)
        try:
            for item in self._collector.scan(account):
                if isinstance(item, ScanProblem):
                    errors.append(item)
                    continue
                row, owner_problems = self.price(item, now)
                ref = item.ref
                warnings.extend(ScanProblem(ref.account_id, ref.region, f"{p}; priced by imageSizeInBytes", ref.name)
                                for p in item.problems)
                warnings.extend(ScanProblem(ref.account_id, ref.region, p, ref.name) for p in owner_problems)
                unsaved.add(row, item.images)
                rows.append(row)
            unsaved.save()
            if not rows and errors and all(e.repository is None for e in errors):
                raise EstateUnreadable(f"no region could be read: {errors[0].account_id} {errors[0].region}: "
                                       f"{errors[0].message}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1
                                                                 else ""))
        except BaseException:
            self._store.abandon_scans([scan_id])  # never left 'running': its rows go now
            raise
        warnings += self._collector.notices[notices_before:]
        key = lambda p: (p.account_id, p.region, p.repository or "", p.message)  # noqa: E731
        result = ScanResult(generated_at=now, price_per_gb_month=self._settings.price_per_gb_month,
                            repositories=rank(rows), errors=sorted(errors, key=key),
                            warnings=sorted(warnings, key=key), api_calls=self._collector.api_calls - calls_before,
                            manifests_fetched=self._collector.manifests_fetched - fetched_before, scan_id=scan_id)
        self._store.finish_scan(result, status="complete" if account is None else ACCOUNT_SCAN)
        return result

    def price(self, inventory: RepositoryInventory, now: datetime) -> tuple[RepositoryCost, list[str]]:
        """A repository read priced at the configured price, named after its account."""
        return price_repository(inventory, price_per_gb_month=self._settings.price_per_gb_month,
                                unused_days=self._settings.unused_days, owner_tag=self._settings.owner_tag, now=now,
                                account_name=self._collector.account_names.get(inventory.ref.account_id))

    def scan_scope(self) -> str:
        """What a scan covers as configured now: a scan of other regions, roles or accounts is another estate."""
        s = self._settings
        return json.dumps({"regions": sorted(s.regions) or [s.aws_region], "roles": sorted(s.role_arns),
                           "organisation_role": s.org_role_name, "accounts": sorted(s.accounts),
                           "excluded": sorted(s.exclude_accounts)}, sort_keys=True)

    def recent_scan(self) -> ScanResult | None:
        """The latest scan, if it is complete, at today's price and younger than ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES:
        the report builds on it rather than rescan (a scan of 2,000 repositories is 90% of a report's time)."""
        latest = self._store.latest_scan()
        if latest is None or latest.partial or latest.price_per_gb_month != self._settings.price_per_gb_month:
            return None
        if self._store.scan_scope(latest.scan_id) != self.scan_scope():  # other regions, roles or accounts
            return None
        if self._clock() - latest.generated_at >= timedelta(minutes=self._settings.report_scan_max_age_minutes):
            return None
        return self.without_deleted(latest)

    def is_stale(self, scan: ScanResult | None) -> bool:
        max_age = timedelta(hours=self._settings.snapshot_max_age_hours)
        return scan is None or self._clock() - scan.generated_at > max_age

    def latest(self, fresh: bool = False) -> ScanResult:
        """The latest scan. A new one when there is none (or, with ``fresh``, when it is stale): one at a time
        across threads and processes. Requests that find a scan running wait for it rather than start
        another; with a stale scan at hand they answer from it instead of waiting."""
        latest = self.without_deleted(self._store.latest_scan())
        if latest is not None and not (fresh and self.is_stale(latest)):
            return latest
        if not self._scan_lock.acquire(timeout=WAIT_FOR_OTHER_SCAN if latest is None else 0):
            if latest is None:
                raise ScanBusy("the first scan has been running for 30 minutes; try again later")
            return latest  # a scan is under way in this process; the stale one answers meanwhile
        try:
            newer = self.without_deleted(self._store.latest_scan())
            if newer is not None and (latest is None or newer.scan_id != latest.scan_id):
                return newer  # finished while this request waited for the lock: no second scan
            if latest is not None and self._store.claim_held(ESTATE_SCAN, lease=SCAN_LEASE):
                return latest  # another process is scanning; the stale scan answers meanwhile
            return self.scan()
        finally:
            self._scan_lock.release()

    def refresh(self, row: RepositoryCost) -> tuple[RepositoryCost, RepositoryInventory]:
        """One repository re-read and re-priced now (not stored: the next scan stores it)."""
        inventory = self._gate.live_inventory(ref_of(row))
        fresh, _ = self.price(inventory, self._clock())
        return fresh, inventory

    def without_deleted(self, scan: ScanResult | None) -> ScanResult | None:
        """The scan without the repositories deleted through the bot since it was taken."""
        if scan is None:
            return None
        gone = {d.arn for d in self._store.decisions(actions=("deleted",)) if d.at >= scan.generated_at}
        if not gone:
            return scan
        return replace(scan, repositories=[r for r in scan.repositories if r.arn not in gone])
