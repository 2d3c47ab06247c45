"""A repository's detail: the view every surface renders (rank, cost, change, status, what adopting frees, what
runs from it, the bill), and what a policy would expire there, from the freshest images at hand.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .adoption import PolicyChanges, PolicyPreview
from .billing import BillingService
from .config import Settings
from .core.analysis import Summary, exemption_of, rank, summarize
from .core.models import Exemption, PolicySavings, RepositoryCost, RepositoryInventory, RepositoryView, ScanResult
from .core.tuning import lifecycle_status
from .errors import PolicyOperationError
from .lookups import Lookups
from .scans import ScanService, ref_of
from .store import Store

logger = logging.getLogger(__name__)


class DetailService:
    def __init__(self, scans: ScanService, lookups: Lookups, changes: PolicyChanges, billing: BillingService,
                 store: Store, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._scans = scans
        self._lookups = lookups
        self._changes = changes
        self._billing = billing
        self._store = store
        self._settings = settings
        self._clock = clock

    def detail(self, query: str, refresh_if_stale: bool = True) -> RepositoryView:
        """The detail of the repository ``query`` names, from the latest scan; when that scan is stale, that
        one repository is re-read (the rest of the estate is not rescanned for one detail)."""
        scan, row = self._lookups.find(query)
        inventory = None
        if refresh_if_stale and self._scans.is_stale(scan):
            try:
                row, inventory = self._scans.refresh(row)
            except PolicyOperationError as exc:  # AWS unreachable: the snapshot is still worth showing
                logger.warning("fresh read of %s failed (%s); answering from the scan of %s", row.arn, exc,
                               scan.generated_at)
            else:
                others = [r for r in scan.repositories if r.arn != row.arn]
                scan = replace(scan, repositories=rank([*others, row]), generated_at=self._clock())
        return self.view(scan, row, inventory)

    def view(self, scan: ScanResult, row: RepositoryCost,
             inventory: RepositoryInventory | None = None) -> RepositoryView:
        """``inventory``: a fresh read of the repository already made, to preview from."""
        labels, previous_rows = self._lookups.context(scan)
        if inventory is None:
            row = self._with_latest_change(row, scan)
        in_use: dict[str, Any] = {}
        expiring: int | None
        freed: int | None
        savings: PolicySavings | None
        try:
            found = self.preview(row, scan=scan, inventory=inventory)
            savings = found.savings  # what adopting really does: the protected form, every in-use image kept
            expiring, freed = savings.expiring_count, savings.bytes_freed
            used = found.used
            assert found.in_use is not None  # previewed with in-use checks
            in_use = dict(in_use_count=len(used), in_use_kept=len(found.in_use_expiring),
                          in_use_where=tuple(sorted({f"{u.kind} {u.name}" for us in used.values() for u in us})),
                          in_use_blind=tuple(f"{p.source} in {p.account_id} {p.region}: {p.message}"
                                             for p in found.in_use.problems))
        except PolicyOperationError:
            expiring = freed = savings = None
        previous = previous_rows.get(row.arn)
        history = self._store.decisions(row.arn)
        last_put = self._changes.last_put(row.arn)
        tuned_text = last_put.policy_after if last_put is not None and last_put.action == "tuned" else None
        position = next((i for i, r in enumerate(scan.repositories, 1) if r.arn == row.arn), len(scan.repositories))
        return RepositoryView(
            row=row, label=labels.get(row.arn, row.repository), rank=position, rank_of=len(scan.repositories),
            lifecycle_status=lifecycle_status(row.lifecycle_policy, self._settings.base_policy, tuned_text),
            expiring_count=expiring, bytes_freed=freed, savings_usd=None if savings is None else savings.monthly_usd,
            savings=savings,
            change_usd=None if previous is None else row.monthly_cost_usd - previous.monthly_cost_usd,
            last_decision=history[-1] if history else None,
            adopted=bool(self._changes.undo_stack(row.arn)), scanned_at=scan.generated_at, previous=previous,
            exemption=exemption_of(row.tags, history), billed=self._billing.repository_bill(scan, row), **in_use)

    def _with_latest_change(self, row: RepositoryCost, scan: ScanResult) -> RepositoryCost:
        """The row with the policy the bot put after ``scan`` was taken (the scan predates the change)."""
        last = self._changes.last_put(row.arn)
        if last is None or last.at <= scan.generated_at:
            return row
        return replace(row, lifecycle_policy=last.policy_after, has_lifecycle_policy=last.policy_after is not None)

    def view_after_change(self, arn: str) -> RepositoryView | None:
        """The detail after a change, from the latest scan and the change itself."""
        found = self._lookups.find_by_arn(arn)
        return None if found is None else self.view(*found)

    def views_owned(self, names_me: Callable[[str], bool]) -> tuple[list[RepositoryView], Summary]:
        """App Home: the repositories whose owner tag (as last scanned) names the viewer, and the totals."""
        scan = self._scans.latest()
        own = [self.view(scan, r) for r in scan.repositories if any(names_me(o) for o in r.owners)]
        return own, summarize(scan.repositories)

    def preview(self, row: RepositoryCost, policy_text: str | None = None, *, scan: ScanResult | None = None,
                fresh: bool = False, inventory: RepositoryInventory | None = None,
                who_may_pull: bool = False) -> PolicyPreview:
        """What a policy (default: base) would expire: from a read already made, the scan's image list, or AWS
        (``who_may_pull``: the repository and registry policies read too, for a person's preview)."""
        ref = ref_of(row)
        if inventory is not None:
            return self._changes.project(ref, policy_text, images=inventory.images, manifests=inventory.manifests,
                                        source="fresh read")
        images = None if fresh or scan is None or scan.scan_id is None else \
            self._store.snapshot_images(scan.scan_id, row.arn)
        return self._changes.project(ref, policy_text, images=images, who_may_pull=who_may_pull)

    def expiring(self, row: RepositoryCost, scan: ScanResult) -> tuple[RepositoryView, list, list[str]]:
        """The Preview button: the view, the decisions that expire when the base policy is adopted (its protected
        form: in-use images kept), and the in-use digests the policy as written would expire (adopting keeps them)."""
        found = self.preview(row, scan=scan)
        adopted = found.adopted or found.result
        return (self.view(scan, row), [d for d in adopted.decisions if d.action == "expire"], found.in_use_expiring)

    def exemption(self, row: RepositoryCost) -> Exemption | None:
        """From the scan's tags and the decision log (who may act is always decided from AWS, at the change)."""
        return exemption_of(row.tags, self._store.decisions(row.arn))
