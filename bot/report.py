"""The weekly report's model and the nudges: the estate, its trend, what adopting would free, the decisions, the bill
beside the estimate; and which owners get a direct message."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .adoption import PolicyChanges
from .billing import BillingService
from .config import Settings
from .core.analysis import exemption_of
from .core.cost import reachable_manifests
from .core.models import ADOPTIONS, PREVIOUS_PERIOD, SNOOZE, PolicyDecision, RepositoryCost, ScanResult
from .core.report import WeeklyReport, build_report
from .core.size import new_bytes_per_week
from .errors import PolicyOperationError
from .scans import ref_of
from .store import Store
from .sweep import swept_since

logger = logging.getLogger(__name__)
NUDGE_TOP = 10  # owners of the costliest repositories without a policy get a direct message


class ReportService:
    def __init__(self, store: Store, changes: PolicyChanges, billing: BillingService, settings: Settings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._store = store
        self._changes = changes
        self._billing = billing
        self._settings = settings
        self._clock = clock

    def weekly_report(self, scan: ScanResult, period: datetime) -> WeeklyReport:
        previous = self._store.latest_scan(before=scan.generated_at - PREVIOUS_PERIOD)
        decisions = self._store.decisions()
        cost_at_adoption = {d.id: cost for d in decisions if d.id is not None and d.action in ADOPTIONS
                            and (cost := self._store.cost_before(d.arn, d.at)) is not None}
        history: dict[str, list[PolicyDecision]] = {}
        for decision in decisions:
            history.setdefault(decision.arn, []).append(decision)
        base_savings, growth = {}, {}
        for row in scan.repositories:  # each repository's images and manifests read and decoded once
            stored = self._store.snapshot_images(scan.scan_id, row.arn) if scan.scan_id is not None else None
            manifests = reachable_manifests((i.digest for i in stored or []), self._store.get_manifests)
            growth[row.arn] = new_bytes_per_week(stored or [], manifests, scan.generated_at)
            if not row.has_lifecycle_policy and exemption_of(row.tags, history.get(row.arn, [])) is None:
                try:  # what adopting frees (the protected form), as every other surface states it; no stored
                    # image list (a scan from before they were kept): a fresh read
                    base_savings[row.arn] = self._changes.project(
                        ref_of(row), images=stored, manifests=None if stored is None else manifests).savings
                except PolicyOperationError as exc:
                    logger.warning("no base policy preview for %s: %s", row.arn, exc)
        return build_report(scan, previous, decisions, cost_at_adoption, base_savings, self._settings.base_policy,
                            self._store.cost_trend(), period, growth=growth,
                            billing=self._billing.billing_summary(scan, previous, decisions),
                            swept=swept_since(self._store, scan.generated_at - timedelta(days=7)))

    def nudge_candidates(self, scan: ScanResult) -> list[RepositoryCost]:
        """The costliest repositories without a policy that are not exempt, nor snoozed lately."""
        now = self._clock()
        chosen: list[RepositoryCost] = []
        for row in (r for r in scan.repositories if not r.has_lifecycle_policy):
            if len(chosen) == NUDGE_TOP:
                break
            history = self._store.decisions(row.arn)
            snoozed = [d for d in history if d.action == "snoozed"]
            if exemption_of(row.tags, history) is not None or (snoozed and now - snoozed[-1].at < SNOOZE):
                continue
            chosen.append(row)
        return chosen
