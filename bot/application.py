"""The façade the surfaces call (the CLI, the Slack listeners, the scheduled jobs, the demo), in their vocabulary:
a scanned row. Each name is bound to the feature service that owns it, composed in bot/wiring.py:

- scans and locking: ``ScanService`` (bot/scans.py); lookups: ``Lookups`` (bot/lookups.py)
- the detail view and previews: ``DetailService`` (bot/detail.py); tuning: ``TuningService`` (bot/tuning.py)
- policy changes: ``PolicyChanges`` (bot/adoption.py); deletion: ``RepositoryDeletion`` (bot/deletion.py);
  ownership claims: ``OwnershipClaims`` (bot/claims.py)
- in use and the guard: ``GuardService`` (bot/guard.py); why a repository is big: ``SizeService`` (bot/size.py)
- the weekly report and nudges: ``ReportService`` (bot/report.py); the bill: ``BillingService`` (bot/billing.py)

Nothing here decides anything: the services do. Nothing here knows Slack or argparse.
"""
from __future__ import annotations

from collections.abc import Callable

from .adoption import PolicyChanges
from .billing import BillingService
from .claims import OwnershipClaims
from .config import Settings
from .core.models import PolicyDecision, RepositoryCost
from .deletion import Deletion, RepositoryDeletion
from .detail import DetailService
from .gate import Actor, Change
from .guard import GuardService
from .lookups import Lookups
from .report import ReportService
from .scans import ScanService, ref_of
from .size import SizeService
from .store import Store
from .sweep import SweepService
from .tuning import TuningService
from .usage import InUseFinder

__all__ = ["Application", "ref_of"]


class Application:
    # the SweepService (bot/sweep.py), set by wiring: the Slack surfaces reach it through here
    sweep: SweepService | None = None

    def __init__(self, *, scans: ScanService, lookups: Lookups, detail: DetailService, tuning: TuningService,
                 changes: PolicyChanges, deletion: RepositoryDeletion, claims: OwnershipClaims, guard: GuardService,
                 size: SizeService, report: ReportService, billing: BillingService, store: Store,
                 settings: Settings, in_use: InUseFinder):
        self._changes, self._deletion, self._claims = changes, deletion, claims
        self.store, self.settings, self.in_use = store, settings, in_use
        # scans and locking
        self.scan, self.scan_account, self.scan_scope = scans.scan, scans.scan_account, scans.scan_scope
        self.recent_scan, self.latest, self.is_stale, self.refresh = \
            scans.recent_scan, scans.latest, scans.is_stale, scans.refresh
        # lookups
        self.find, self.find_by_arn, self.summary = lookups.find, lookups.find_by_arn, lookups.summary
        self.known_account, self.account_view, self.labels = \
            lookups.known_account, lookups.account_view, lookups.labels
        # the detail view, previews and tuning
        self.detail, self.view, self.view_after_change = detail.detail, detail.view, detail.view_after_change
        self.views_owned, self.preview, self.expiring, self.exemption = \
            detail.views_owned, detail.preview, detail.expiring, detail.exemption
        self.base_tuning, self.tuned_preview, self.adopt_tuned = \
            tuning.base_tuning, tuning.tuned_preview, tuning.adopt_tuned
        # ownership claims
        self.claim_of, self.decide_claim = claims.claim_of, claims.decide_claim
        # in use and the guard, size and config blobs
        self.in_use_images, self.guard = guard.in_use_images, guard.guard
        self.size, self.config_steps = size.size, size.config_steps
        # the report, nudges and the bill
        self.weekly_report, self.nudge_candidates = report.weekly_report, report.nudge_candidates
        self.billing, self.billing_summary, self.repository_bill = \
            billing.billing, billing.billing_summary, billing.repository_bill

    # -- changes, from a scanned row (each checked by its service: live owners, backups, undo stack, hand edits) --

    def adopt(self, row: RepositoryCost, actor: Actor, policy_text: str | None = None,
              despite_partial: bool = False, despite_in_use: bool = False) -> Change:
        return self._changes.adopt(ref_of(row), policy_text, actor, despite_partial=despite_partial,
                                  despite_in_use=despite_in_use)

    def rollback(self, row: RepositoryCost, actor: Actor, force: bool = False, over: str | None = None,
                 despite_in_use: bool = False) -> Change:
        return self._changes.rollback(ref_of(row), actor, force, over, despite_in_use=despite_in_use)

    def protect(self, row: RepositoryCost, actor: Actor, despite_partial: bool = False,
                despite_in_use: bool = False) -> Change:
        """The guard's Protect button: the repository's own policy, adopted in its protected form (undoable)."""
        return self._changes.adopt(ref_of(row), None, actor, current=True, despite_partial=despite_partial,
                                  despite_in_use=despite_in_use)

    def decline(self, row: RepositoryCost, actor: Actor, reason: str | None = None, note: str | None = None) -> Change:
        """Exempts the repository: no nudges, out of the base policy's savings line, listed with ``reason``."""
        return self._changes.choose(ref_of(row), "declined", actor, reason, note)

    def snooze(self, row: RepositoryCost, actor: Actor) -> Change:
        return self._changes.choose(ref_of(row), "snoozed", actor)

    def lift_exemption(self, row: RepositoryCost, actor: Actor) -> Change:
        return self._changes.lift_exemption(ref_of(row), actor)

    def delete_repository(self, row: RepositoryCost, actor: Actor, check_unused: bool = True,
                          deliver: Callable[[int, str], None] | None = None) -> Deletion:
        return self._deletion.delete_repository(ref_of(row), actor, check_unused, deliver)

    def claim_ownership(self, row: RepositoryCost, claimer: str) -> tuple[int, bool]:
        return self._claims.claim_ownership(ref_of(row), claimer)

    # -- the store, read for a surface -----------------------------------------------------------

    def first_delivery(self, click_id: str) -> bool:
        """True the first time a Slack interaction is seen (redeliveries and double submits are ignored)."""
        return self.store.claim_click(click_id)

    def decision_log(self) -> list[PolicyDecision]:
        """Every decision recorded, oldest first."""
        return self.store.decisions()
