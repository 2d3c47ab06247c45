"""The scan service: collect the estate, price every repository, store the snapshot, rank."""
from __future__ import annotations

from datetime import datetime, timezone

from .aws import EcrCollector
from .config import Settings
from .core.analysis import rank
from .core.cost import price_repository
from .core.models import RepositoryCost, RepositoryInventory, RepositoryRef, ScanProblem, ScanResult
from .store import Store


def run_scan(collector: EcrCollector, store: Store, settings: Settings, now: datetime | None = None) -> ScanResult:
    """Scans, saving each repository as it arrives so memory grows with repositories, not images."""
    now = now or datetime.now(timezone.utc)
    scan_id = store.begin_scan(now, settings.price_per_gb_month)
    calls_before, fetched_before = collector.api_calls, collector.manifests_fetched  # the collector may be reused
    rows, errors, warnings = [], [], []
    for item in collector.scan():
        if isinstance(item, ScanProblem):
            errors.append(item)
            continue
        row, owner_problems = price_repository(item, price_per_gb_month=settings.price_per_gb_month,
                                               unused_days=settings.unused_days, owner_tag=settings.owner_tag,
                                               now=now)
        ref = item.ref
        for problem in item.problems:
            warnings.append(ScanProblem(ref.account_id, ref.region, f"{problem}; priced by imageSizeInBytes", ref.name))
        warnings.extend(ScanProblem(ref.account_id, ref.region, p, ref.name) for p in owner_problems)
        store.save_repository(scan_id, row, item.images)
        rows.append(row)
    key = lambda p: (p.account_id, p.region, p.repository or "", p.message)  # noqa: E731
    result = ScanResult(generated_at=now, price_per_gb_month=settings.price_per_gb_month, repositories=rank(rows),
                        errors=sorted(errors, key=key), warnings=sorted(warnings, key=key),
                        api_calls=collector.api_calls - calls_before,
                        manifests_fetched=collector.manifests_fetched - fetched_before,
                        scan_id=scan_id)
    store.finish_scan(result)
    return result


def refresh_repository(collector: EcrCollector, settings: Settings, row: RepositoryCost,
                       now: datetime | None = None) -> tuple[RepositoryCost, RepositoryInventory]:
    """One repository re-read and re-priced now (not stored: the next scan stores it), with what was read."""
    inventory = collector.refresh(RepositoryRef(row.account_id, row.region, row.repository, row.arn))
    fresh, _ = price_repository(inventory, price_per_gb_month=settings.price_per_gb_month,
                                unused_days=settings.unused_days, owner_tag=settings.owner_tag,
                                now=now or datetime.now(timezone.utc))
    return fresh, inventory
