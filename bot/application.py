"""The application layer: the questions every surface asks, answered in one place.

The CLI, the Slack listeners, the scheduled jobs and the demo call this; it calls the adapters (ECR, the
store) and the pure core, and returns core models for the renderers. Nothing here knows Slack or argparse.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .adoption import Actor, Change, Deletion, PolicyChanges, PolicyPreview, compact
from .aws.billing import BillingSources
from .aws.ecr import EcrCollector
from .config import Settings
from .core.analysis import (
    Summary,
    display_names,
    exemption_of,
    find_account,
    find_repository,
    match_account,
    rank,
    summarize,
)
from .core.billing import (
    CE_DAYS,
    BillingSummary,
    CostLine,
    CurBilling,
    CurLine,
    EstateFacts,
    EstimatedRepository,
    RepositoryBill,
    cost_explorer_lines,
    cur_billing,
    cur_service_bill,
    daily_estimate,
    denied_note,
    service_bill,
    summarize_bill,
    unavailable,
)
from .core.cost import GIB, price_repository, reachable_manifests
from .core.inuse import RISKY_ACTIONS, InUseSet, Usage, after_plan, has_pin_rule, is_pin
from .core.lifecycle import evaluate, same_document, validate_policy
from .core.models import (
    ADOPTIONS,
    PREVIOUS_PERIOD,
    SNOOZE,
    Exemption,
    PolicyDecision,
    PolicySavings,
    RepositoryCost,
    RepositoryInventory,
    RepositoryRef,
    RepositoryView,
    ScanProblem,
    ScanResult,
)
from .core.report import WeeklyReport, build_report
from .core.size import EstateShare, SizeReport, configs_to_read, layer_steps, new_bytes_per_week, pushes, size_report
from .core.tuning import Tuning, lifecycle_status, tuned_policy, tuning_of
from .errors import (
    AwsAccessDenied,
    AwsNotFound,
    BillingUnavailable,
    BlobRefused,
    EstateUnreadable,
    PolicyOperationError,
    ScanBusy,
    describe,
)
from .heartbeat import heartbeat
from .store import HEARTBEAT_SECONDS, PROCESS, SCAN_LEASE, Store
from .sweep import SweepService, swept_since
from .usage import InUseFinder

logger = logging.getLogger(__name__)
ACCOUNT_SCAN = "account"  # the status of a finished scan of one account: never read as the estate's latest scan
ESTATE_SCAN = "scan:estate"  # the claim a scan holds: one scan of the estate at a time, across processes
NUDGE_TOP = 10  # owners of the costliest repositories without a policy get a direct message
WAIT_FOR_OTHER_SCAN = 30 * 60.0  # seconds a request waits for a scan another process is running


@dataclass(frozen=True)
class InUseImage:
    row: RepositoryCost
    digest: str
    tags: tuple[str, ...]
    used_by: tuple[Usage, ...]


@dataclass(frozen=True)
class GuardItem:
    row: RepositoryCost
    digest: str
    used_by: tuple[Usage, ...]
    rule_priority: int | None = None
    action: str | None = None  # at risk: expire, or transition (to the archive: unpullable until restored)


@dataclass
class GuardResult:
    at_risk: list[GuardItem] = field(default_factory=list)  # in use, and the current policy would expire it
    protected: list[GuardItem] = field(default_factory=list)  # in use, kept by a pin
    released: list[GuardItem] = field(default_factory=list)  # no longer used: its pin removed
    partial: bool = False
    errors: list[str] = field(default_factory=list)


def ref_of(row: RepositoryCost) -> RepositoryRef:
    return RepositoryRef(row.account_id, row.region, row.repository, row.arn)


class Application:
    # the SweepService (bot/sweep.py), set by wiring: the Slack surfaces reach it through here
    sweep: SweepService | None = None

    def __init__(self, store: Store, collector: EcrCollector, changes: PolicyChanges, in_use: InUseFinder,
                 settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep, billing_sources: BillingSources | None = None):
        self.billing_sources = billing_sources or BillingSources()
        self._billing_warned: set[str] = set()
        self._repository_bills: tuple[tuple, dict[str | None, RepositoryBill]] | None = None
        self.store = store
        self.collector = collector
        self.changes = changes
        self.in_use = in_use
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._scan_lock = threading.Lock()
        self._context: tuple[tuple, dict[str, str], dict[str, RepositoryCost]] | None = None

    # -- scans -----------------------------------------------------------------------------

    def scan(self, now: datetime | None = None) -> ScanResult:
        """Collects the estate now. One scan at a time across threads and processes (a claim in the store): a
        caller that finds another scan under way waits for it (bounded) and gets its result. Raises
        EstateUnreadable when not one account could be read."""
        holder = f"{PROCESS}:{uuid.uuid4().hex}"
        if not self.store.claim(ESTATE_SCAN, holder, lease=SCAN_LEASE):
            return self._wait_for_other_scan()
        try:
            return self._scan(now or self._clock(), holder)
        finally:
            self.store.release_claim(ESTATE_SCAN, holder)

    def scan_account(self, account_id: str, now: datetime | None = None) -> ScanResult:
        """Collects one account now (every region configured; no other account is entered). Stored as an account
        scan, never as a scan of the estate: the report, `repo`, the guard and the sweep keep using the latest full
        scan. One scan of an account at a time; raises ScanBusy when another is under way."""
        holder, key = f"{PROCESS}:{uuid.uuid4().hex}", f"{ESTATE_SCAN}:{account_id}"
        if not self.store.claim(key, holder, lease=SCAN_LEASE):
            raise ScanBusy(f"a scan of account {account_id} is already running; try again when it ends")
        try:
            return self._scan(now or self._clock(), holder, account_id)
        finally:
            self.store.release_claim(key, holder)

    def _wait_for_other_scan(self) -> ScanResult:
        started = self.store.latest_scan()
        deadline = time.monotonic() + WAIT_FOR_OTHER_SCAN
        while self.store.claim_held(ESTATE_SCAN, lease=SCAN_LEASE):
            if time.monotonic() > deadline:
                raise ScanBusy("another scan has been running for 30 minutes; try again later")
            self._sleep(1.0)
        latest = self.store.latest_scan()
        if latest is None or (started is not None and latest.scan_id == started.scan_id):
            return self.scan()  # the other scan failed: this caller scans itself
        return latest

    def _scan(self, now: datetime, holder: str, account: str | None = None) -> ScanResult:
        """Saves each repository as it arrives (memory follows repositories, not images); one heartbeat keeps the
        scan and its claim alive between repositories. ``account``: that account alone (an account scan)."""
        scope = self.scan_scope() if account is None else json.dumps({"account": account}, sort_keys=True)
        scan_id = self.store.begin_scan(now, self.settings.price_per_gb_month, scope)
        claim = ESTATE_SCAN if account is None else f"{ESTATE_SCAN}:{account}"

        def beat() -> bool:
            claimed = self.store.refresh_claim(claim, holder)
            return self.store.heartbeat_scan(scan_id) and claimed

        with heartbeat(beat, HEARTBEAT_SECONDS, "scan-heartbeat"):
            return self._collect(scan_id, now, account)

    def _collect(self, scan_id: int, now: datetime, account: str | None = None) -> ScanResult:
        calls_before, fetched_before = self.collector.api_calls, self.collector.manifests_fetched
        notices_before = len(self.collector.notices)
        rows: list[RepositoryCost] = []
        errors: list[ScanProblem] = []
        warnings: list[ScanProblem] = []
        try:
            for item in self.collector.scan(account):
                if isinstance(item, ScanProblem):
                    errors.append(item)
                    continue
                row, owner_problems = self._price(item, now)
                ref = item.ref
                warnings.extend(ScanProblem(ref.account_id, ref.region, f"{p}; priced by imageSizeInBytes", ref.name)
                                for p in item.problems)
                warnings.extend(ScanProblem(ref.account_id, ref.region, p, ref.name) for p in owner_problems)
                self.store.save_repository(scan_id, row, item.images)
                rows.append(row)
            if not rows and errors and all(e.repository is None for e in errors):
                raise EstateUnreadable(f"no region could be read: {errors[0].account_id} {errors[0].region}: "
                                       f"{errors[0].message}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1
                                                                 else ""))
        except BaseException:
            self.store.abandon_scans([scan_id])  # never left 'running': its rows go now
            raise
        warnings += self.collector.notices[notices_before:]
        key = lambda p: (p.account_id, p.region, p.repository or "", p.message)  # noqa: E731
        result = ScanResult(generated_at=now, price_per_gb_month=self.settings.price_per_gb_month,
                            repositories=rank(rows), errors=sorted(errors, key=key),
                            warnings=sorted(warnings, key=key), api_calls=self.collector.api_calls - calls_before,
                            manifests_fetched=self.collector.manifests_fetched - fetched_before, scan_id=scan_id)
        self.store.finish_scan(result, status="complete" if account is None else ACCOUNT_SCAN)
        return result

    def _price(self, inventory: RepositoryInventory, now: datetime):
        row, problems = price_repository(inventory, price_per_gb_month=self.settings.price_per_gb_month,
                                         unused_days=self.settings.unused_days, owner_tag=self.settings.owner_tag,
                                         now=now)
        return replace(row, account_name=self.collector.account_names.get(row.account_id)), problems

    def scan_scope(self) -> str:
        """What a scan covers as configured now: a scan of other regions, roles or accounts is another estate."""
        s = self.settings
        return json.dumps({"regions": sorted(s.regions) or [s.aws_region], "roles": sorted(s.role_arns),
                           "organisation_role": s.org_role_name, "accounts": sorted(s.accounts),
                           "excluded": sorted(s.exclude_accounts)}, sort_keys=True)

    def recent_scan(self) -> ScanResult | None:
        """The latest scan, if it is complete, at today's price and younger than ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES:
        the report builds on it rather than rescan (a scan of 2,000 repositories is 90% of a report's time)."""
        latest = self.store.latest_scan()
        if latest is None or latest.partial or latest.price_per_gb_month != self.settings.price_per_gb_month:
            return None
        if self.store.scan_scope(latest.scan_id) != self.scan_scope():  # other regions, roles or accounts
            return None
        if self._clock() - latest.generated_at >= timedelta(minutes=self.settings.report_scan_max_age_minutes):
            return None
        return self._without_deleted(latest)

    def is_stale(self, scan: ScanResult | None) -> bool:
        return scan is None or self._clock() - scan.generated_at > timedelta(hours=self.settings.snapshot_max_age_hours)

    def latest(self, fresh: bool = False) -> ScanResult:
        """The latest scan. A new one when there is none (or, with ``fresh``, when it is stale): one at a time
        across threads and processes. Requests that find a scan running wait for it rather than start
        another; with a stale scan at hand they answer from it instead of waiting."""
        latest = self._without_deleted(self.store.latest_scan())
        if latest is not None and not (fresh and self.is_stale(latest)):
            return latest
        if not self._scan_lock.acquire(timeout=WAIT_FOR_OTHER_SCAN if latest is None else 0):
            if latest is None:
                raise ScanBusy("the first scan has been running for 30 minutes; try again later")
            return latest  # a scan is under way in this process; the stale one answers meanwhile
        try:
            newer = self._without_deleted(self.store.latest_scan())
            if newer is not None and (latest is None or newer.scan_id != latest.scan_id):
                return newer  # finished while this request waited for the lock: no second scan
            if latest is not None and self.store.claim_held(ESTATE_SCAN, lease=SCAN_LEASE):
                return latest  # another process is scanning; the stale scan answers meanwhile
            return self.scan()
        finally:
            self._scan_lock.release()

    def refresh(self, row: RepositoryCost) -> tuple[RepositoryCost, RepositoryInventory]:
        """One repository re-read and re-priced now (not stored: the next scan stores it)."""
        inventory = self.changes.read(ref_of(row))
        fresh, _ = self._price(inventory, self._clock())
        return fresh, inventory

    # -- lookups -----------------------------------------------------------------------------

    def find(self, query: str, scan: ScanResult | None = None) -> tuple[ScanResult, RepositoryCost]:
        """The repository NAME (name, region/name or ARN) names; raises AmbiguousOrUnknownName."""
        scan = scan or self.latest()
        return scan, find_repository(scan.repositories, query)

    def _without_deleted(self, scan: ScanResult | None) -> ScanResult | None:
        """The scan without the repositories deleted through the bot since it was taken."""
        if scan is None:
            return None
        gone = {d.arn for d in self.store.decisions(actions=("deleted",)) if d.at >= scan.generated_at}
        if not gone:
            return scan
        return replace(scan, repositories=[r for r in scan.repositories if r.arn not in gone])

    def find_by_arn(self, arn: str) -> tuple[ScanResult, RepositoryCost] | None:
        scan = self._without_deleted(self.store.latest_scan())
        row = next((r for r in scan.repositories if r.arn == arn), None) if scan else None
        return (scan, row) if scan is not None and row else None

    def summary(self, scan: ScanResult) -> Summary:
        return summarize(scan.repositories)

    def known_account(self, query: str) -> str:
        """The account ID ``query`` names among the accounts the bot knows before scanning: those it can enter
        (its own, ECR_COST_ROLE_ARNS, the organisation), those it cannot (named in their problems), and those of
        the latest scan. Raises UnknownAccount (with the closest names): a typo scans nothing."""
        accounts: dict[str, str | None] = {}
        latest = self.store.latest_scan()
        for row in latest.repositories if latest else []:
            accounts.setdefault(row.account_id, row.account_name)
        entered, problems = self.collector.accounts()
        for account in entered:
            accounts[account.account_id] = account.name or accounts.get(account.account_id)
        for problem in problems:
            accounts.setdefault(problem.account_id, None)
        return match_account(accounts, query)

    def account_view(self, scan: ScanResult, query: str) -> tuple[ScanResult, str]:
        """The scan narrowed to the account ``query`` names (its ID or its name in the organisation), and how to
        call it; raises UnknownAccount."""
        unread = {e.account_id for e in scan.errors} - {r.account_id for r in scan.repositories}
        # an account the scan could not read: its errors say why
        account_id = query.strip() if query.strip() in unread else find_account(scan.repositories, query)
        rows = [r for r in scan.repositories if r.account_id == account_id]
        name = next((r.account_name for r in rows if r.account_name), None)
        narrowed = replace(scan, repositories=rows, errors=[e for e in scan.errors if e.account_id == account_id])
        return narrowed, f"{name} ({account_id})" if name else account_id

    def labels(self, scan: ScanResult) -> dict[str, str]:
        return self._scan_context(scan)[0]

    def _scan_context(self, scan: ScanResult) -> tuple[dict[str, str], dict[str, RepositoryCost]]:
        """Display names and last period's rows of ``scan``: computed once per scan, not once per view
        (App Home and the report's nudges build many views of one scan)."""
        key = (scan.scan_id, scan.generated_at, len(scan.repositories))
        context = self._context  # one read: listener threads may replace it meanwhile
        if context is None or context[0] != key:
            previous = self.store.latest_scan(before=scan.generated_at - PREVIOUS_PERIOD)
            rows = {r.arn: r for r in previous.repositories} if previous else {}
            context = self._context = (key, display_names(scan.repositories), rows)
        return context[1], context[2]

    # -- a repository's detail -----------------------------------------------------------------

    def detail(self, query: str, refresh_if_stale: bool = True) -> RepositoryView:
        """The detail of the repository ``query`` names, from the latest scan; when that scan is stale, that
        one repository is re-read (the rest of the estate is not rescanned for one detail)."""
        scan, row = self.find(query)
        inventory = None
        if refresh_if_stale and self.is_stale(scan):
            try:
                row, inventory = self.refresh(row)
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
        labels, previous_rows = self._scan_context(scan)
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
        history = self.store.decisions(row.arn)
        last_put = self.changes.last_put(row.arn)
        tuned_text = last_put.policy_after if last_put is not None and last_put.action == "tuned" else None
        position = next((i for i, r in enumerate(scan.repositories, 1) if r.arn == row.arn), len(scan.repositories))
        return RepositoryView(
            row=row, label=labels.get(row.arn, row.repository), rank=position, rank_of=len(scan.repositories),
            lifecycle_status=lifecycle_status(row.lifecycle_policy, self.settings.base_policy, tuned_text),
            expiring_count=expiring, bytes_freed=freed, savings_usd=None if savings is None else savings.monthly_usd,
            savings=savings,
            change_usd=None if previous is None else row.monthly_cost_usd - previous.monthly_cost_usd,
            last_decision=history[-1] if history else None,
            adopted=bool(self.changes.undo_stack(row.arn)), scanned_at=scan.generated_at, previous=previous,
            exemption=exemption_of(row.tags, history), billed=self.repository_bill(scan, row), **in_use)

    def _with_latest_change(self, row: RepositoryCost, scan: ScanResult) -> RepositoryCost:
        """The row with the policy the bot put after ``scan`` was taken (the scan predates the change)."""
        last = self.changes.last_put(row.arn)
        if last is None or last.at <= scan.generated_at:
            return row
        return replace(row, lifecycle_policy=last.policy_after, has_lifecycle_policy=last.policy_after is not None)

    def view_after_change(self, arn: str) -> RepositoryView | None:
        """The detail after a change, from the latest scan and the change itself."""
        found = self.find_by_arn(arn)
        return None if found is None else self.view(*found)

    def views_owned(self, names_me: Callable[[str], bool]) -> tuple[list[RepositoryView], Summary]:
        """App Home: the repositories whose owner tag (as last scanned) names the viewer, and the totals."""
        scan = self.latest()
        own = [self.view(scan, r) for r in scan.repositories if any(names_me(o) for o in r.owners)]
        return own, summarize(scan.repositories)

    def preview(self, row: RepositoryCost, policy_text: str | None = None, *, scan: ScanResult | None = None,
                fresh: bool = False, inventory: RepositoryInventory | None = None,
                who_may_pull: bool = False) -> PolicyPreview:
        """What a policy (default: base) would expire: from a read already made, the scan's image list, or AWS
        (``who_may_pull``: the repository and registry policies read too, for a person's preview)."""
        ref = ref_of(row)
        if inventory is not None:
            return self.changes.preview(ref, policy_text, images=inventory.images, manifests=inventory.manifests,
                                        source="fresh read")
        images = None if fresh or scan is None or scan.scan_id is None else \
            self.store.snapshot_images(scan.scan_id, row.arn)
        return self.changes.preview(ref, policy_text, images=images, who_may_pull=who_may_pull)

    def expiring(self, row: RepositoryCost, scan: ScanResult) -> tuple[RepositoryView, list, list[str]]:
        """The Preview button: the view, the decisions that expire when the base policy is adopted (its protected
        form: in-use images kept), and the in-use digests the policy as written would expire (adopting keeps them)."""
        found = self.preview(row, scan=scan)
        adopted = found.adopted or found.result
        return (self.view(scan, row), [d for d in adopted.decisions if d.action == "expire"], found.in_use_expiring)

    # -- changes (each checked by PolicyChanges: live owners, backups, undo stack, hand edits) ---------

    def adopt(self, row: RepositoryCost, actor: Actor, policy_text: str | None = None,
              despite_partial: bool = False, despite_in_use: bool = False) -> Change:
        return self.changes.adopt(ref_of(row), policy_text, actor, despite_partial=despite_partial,
                                  despite_in_use=despite_in_use)

    def rollback(self, row: RepositoryCost, actor: Actor, force: bool = False, over: str | None = None,
                 despite_in_use: bool = False) -> Change:
        return self.changes.rollback(ref_of(row), actor, force, over, despite_in_use=despite_in_use)

    def decline(self, row: RepositoryCost, actor: Actor, reason: str | None = None, note: str | None = None) -> Change:
        """Exempts the repository: no nudges, out of the base policy's savings line, listed with ``reason``."""
        return self.changes.choose(ref_of(row), "declined", actor, reason, note)

    def lift_exemption(self, row: RepositoryCost, actor: Actor) -> Change:
        return self.changes.lift_exemption(ref_of(row), actor)

    def exemption(self, row: RepositoryCost) -> Exemption | None:
        """From the scan's tags and the decision log (who may act is always decided from AWS, at the change)."""
        return exemption_of(row.tags, self.store.decisions(row.arn))

    # -- tuning the base policy ------------------------------------------------------------------

    def base_tuning(self) -> Tuning:
        """The form's starting values: the base policy's own numbers."""
        return tuning_of(self.settings.base_policy)

    def tuned_preview(self, row: RepositoryCost, tuning: Tuning, scan: ScanResult | None = None) -> PolicyPreview:
        """What the tuned policy would do, in-use images kept: from the scan's image list (fast enough to follow
        a person typing)."""
        return self.preview(row, compact(tuned_policy(tuning)), scan=scan or self.latest())

    def adopt_tuned(self, row: RepositoryCost, actor: Actor, tuning: Tuning, despite_partial: bool = False,
                    despite_in_use: bool = False) -> Change:
        return self.changes.adopt(ref_of(row), compact(tuned_policy(tuning)), actor, despite_partial=despite_partial,
                                  tuned=True, despite_in_use=despite_in_use)

    # -- deleting an unused repository, claiming an unowned one ----------------------------------------

    def delete_repository(self, row: RepositoryCost, actor: Actor, check_unused: bool = True,
                          deliver: Callable[[int, str], None] | None = None) -> Deletion:
        return self.changes.delete_repository(ref_of(row), actor, check_unused, deliver)

    def claim_ownership(self, row: RepositoryCost, claimer: str) -> tuple[int, bool]:
        return self.changes.claim_ownership(ref_of(row), claimer)

    def claim_of(self, claim_id: int) -> tuple[RepositoryRef, str, str]:
        return self.changes.claim_of(claim_id)

    def decide_claim(self, claim_id: int, approve: bool, actor: Actor) -> Change:
        return self.changes.decide_claim(claim_id, approve, actor)

    def snooze(self, row: RepositoryCost, actor: Actor) -> Change:
        return self.changes.choose(ref_of(row), "snoozed", actor)

    def protect(self, row: RepositoryCost, actor: Actor, despite_partial: bool = False,
                despite_in_use: bool = False) -> Change:
        """The guard's Protect button: the repository's own policy, adopted in its protected form (undoable)."""
        return self.changes.adopt(ref_of(row), None, actor, current=True, despite_partial=despite_partial,
                                  despite_in_use=despite_in_use)

    def first_delivery(self, click_id: str) -> bool:
        """True the first time a Slack interaction is seen (redeliveries and double submits are ignored)."""
        return self.store.claim_click(click_id)

    def decisions(self) -> list[PolicyDecision]:
        return self.store.decisions()

    # -- in use and the guard --------------------------------------------------------------------

    def in_use_images(self, query: str | None = None, fresh: bool = False) -> tuple[list[InUseImage], InUseSet]:
        """Every in-use image (of one repository when ``query`` names it) and where it runs (``fresh``: the
        runtimes read now, not a few minutes ago)."""
        scan = self.latest()
        assert scan.scan_id is not None  # a stored scan
        rows = [self.find(query, scan)[1]] if query else scan.repositories
        found = self.in_use.estate(scan, fresh=fresh)
        items = []
        for row in rows:
            used = found.of(row.account_id, row.region, row.repository)
            tags = {i.digest: i.tags for i in (self.store.snapshot_images(scan.scan_id, row.arn) or [])}
            items += [InUseImage(row, digest, tags.get(digest, ()), tuple(usages))
                      for digest, usages in sorted(used.items())]
        return items, found

    def guard(self) -> GuardResult:
        """Every repository's current policy (adopted through the bot or not) against its images and the in-use
        set, on a fresh scan. Where the bot adopted the policy, its protection is refreshed: new in-use images
        pinned, pins of images no longer used released where the policy would expire them anyway."""
        scan = self.scan()
        assert scan.scan_id is not None  # a stored scan
        found = self.in_use.estate(scan, fresh=True)
        result = GuardResult(partial=found.partial or scan.partial,
                             errors=[f"{p.source} in {p.account_id} {p.region}: {p.message}" for p in found.problems]
                             + [f"{e.account_id} {e.region}: {e.message}" for e in scan.errors])
        now = self._clock()
        for row in scan.repositories:
            used = found.of(row.account_id, row.region, row.repository)
            images = self.store.snapshot_images(scan.scan_id, row.arn) or []
            if row.lifecycle_policy is None or not (used or any(is_pin(t) for i in images for t in i.tags)):
                continue
            policy, problems = validate_policy(row.lifecycle_policy)
            if problems:
                result.errors.append(f"{row.repository}: its lifecycle policy is not one ECR accepts: {problems[0]}")
                continue
            assert policy is not None  # no problems: a policy
            manifests = reachable_manifests((i.digest for i in images), self.store.get_manifests)
            last = self.changes.last_put(row.arn)
            if has_pin_rule(policy) and last is not None and same_document(last.policy_after, row.lifecycle_policy):
                # a partial check releases nothing: an image running where we cannot see may need its pin (an
                # account that may pull this repository whose runtimes cannot be read is such a place)
                blind = [] if found.partial else self.in_use.pull_problems(ref_of(row))
                if blind:
                    result.partial = True
                    result.errors += [f"{row.repository}: {p.message}" for p in blind]
                try:
                    plan, failed = self.changes.refresh_protection(ref_of(row), images, used, policy, manifests,
                                                                   release=not (found.partial or blind))
                except PolicyOperationError as exc:
                    result.errors.append(str(exc))
                else:
                    images = after_plan(images, plan)
                    result.released += [GuardItem(row, d, ()) for d in plan.release]
                    result.errors += failed
            decisions = evaluate(images, policy, now, manifests)
            pinned = {i.digest for i in images if any(is_pin(t) for t in i.tags)}
            for digest, usages in sorted(used.items()):
                decision = decisions.get(digest)
                if decision is not None and decision.action in RISKY_ACTIONS:
                    result.at_risk.append(GuardItem(row, digest, tuple(usages), decision.rule_priority,
                                                    decision.action))
                elif digest in pinned:
                    result.protected.append(GuardItem(row, digest, tuple(usages)))
        return result

    # -- why a repository is big -------------------------------------------------------------------

    def size(self, scan: ScanResult, row: RepositoryCost, read_steps: bool = True) -> SizeReport:
        """Why ``row`` is big: from the scan's image lists and the manifest cache (every other repository of the scan is
        read too, one at a time, for the layers and bases they share). With ``read_steps``, the config blobs of its
        largest images give each layer's Dockerfile step: read once, ever, where ecr:GetDownloadUrlForLayer allows."""
        images, manifests = self._images_and_manifests(scan, row)
        found, unknown = pushes(images, manifests)
        share = EstateShare(row.arn, row.repository, found)
        for other in scan.repositories:
            if other.arn != row.arn:
                share.add(other.arn, other.repository, *self._images_and_manifests(scan, other))
        steps, notices = self.config_steps(row, configs_to_read(found)) if read_steps and found else ({}, [])
        return size_report(row, found, unknown, share, steps, price_per_gb_month=scan.price_per_gb_month,
                           large_image_bytes=int(self.settings.large_image_gb * GIB), now=scan.generated_at,
                           notices=notices)

    def _images_and_manifests(self, scan: ScanResult, row: RepositoryCost):
        images = (self.store.snapshot_images(scan.scan_id, row.arn) if scan.scan_id is not None else None) or []
        return images, reachable_manifests((i.digest for i in images), self.store.get_manifests)

    def config_steps(self, row: RepositoryCost, digests: list[str]) -> tuple[dict, list[str]]:
        """Config digest -> the Dockerfile step of each layer (None: unknown), from the cache or read from ECR, and
        notices. One blob that cannot be read never fails the answer; a refusal (no permission) or a failing endpoint
        stops the reading."""
        known = self.store.get_config_steps(digests)
        steps = {digest: found for digest, (found, _) in known.items()}
        notices: list[str] = []
        for digest in [d for d in digests if d not in known]:
            try:
                text = self.collector.config_blob(ref_of(row), digest)
            except BlobRefused as exc:  # immutable: it will be as big (or as wrong) next time
                self.store.put_config_steps(digest, None, str(exc))
                notices.append(str(exc))
                continue
            except AwsNotFound as exc:  # that blob alone is missing
                notices.append(f"config blob {digest} could not be read: {describe(exc)}")
                continue
            except AwsAccessDenied as exc:
                notices.append(f"created_by is unknown: the bot may not read image config blobs of "
                               f"{row.repository} (grant ecr:GetDownloadUrlForLayer; see the README's IAM "
                               f"permissions)")
                logger.info("config blob %s of %s: %s", digest, row.arn, exc)
                break
            except Exception as exc:  # noqa: BLE001 - the figures stand without the steps
                notices.append(f"created_by is unknown: the config blobs of {row.repository} could not be read "
                               f"({describe(exc)})")
                logger.info("config blob %s of %s: %s", digest, row.arn, exc)
                break
            parsed, problem = layer_steps(text)
            self.store.put_config_steps(digest, parsed, problem)
            steps[digest] = parsed
        return steps, notices

    # -- the weekly report ----------------------------------------------------------------------

    def weekly_report(self, scan: ScanResult, period: datetime) -> WeeklyReport:
        previous = self.store.latest_scan(before=scan.generated_at - PREVIOUS_PERIOD)
        decisions = self.store.decisions()
        cost_at_adoption = {d.id: cost for d in decisions if d.id is not None and d.action in ADOPTIONS
                            and (cost := self.store.cost_before(d.arn, d.at)) is not None}
        history: dict[str, list[PolicyDecision]] = {}
        for decision in decisions:
            history.setdefault(decision.arn, []).append(decision)
        base_savings, growth = {}, {}
        for row in scan.repositories:  # each repository's images and manifests read and decoded once
            stored = self.store.snapshot_images(scan.scan_id, row.arn) if scan.scan_id is not None else None
            manifests = reachable_manifests((i.digest for i in stored or []), self.store.get_manifests)
            growth[row.arn] = new_bytes_per_week(stored or [], manifests, scan.generated_at)
            if not row.has_lifecycle_policy and exemption_of(row.tags, history.get(row.arn, [])) is None:
                try:  # what adopting frees (the protected form), as every other surface states it; no stored
                    # image list (a scan from before they were kept): a fresh read
                    base_savings[row.arn] = self.changes.preview(
                        ref_of(row), images=stored, manifests=None if stored is None else manifests).savings
                except PolicyOperationError as exc:
                    logger.warning("no base policy preview for %s: %s", row.arn, exc)
        return build_report(scan, previous, decisions, cost_at_adoption, base_savings, self.settings.base_policy,
                            self.store.cost_trend(), period, growth=growth,
                            billing=self.billing_summary(scan, previous, decisions),
                            swept=swept_since(self.store, scan.generated_at - timedelta(days=7)))

    def nudge_candidates(self, scan: ScanResult) -> list[RepositoryCost]:
        """The costliest repositories without a policy that are not exempt, nor snoozed lately."""
        now = self._clock()
        chosen: list[RepositoryCost] = []
        for row in (r for r in scan.repositories if not r.has_lifecycle_policy):
            if len(chosen) == NUDGE_TOP:
                break
            history = self.store.decisions(row.arn)
            snoozed = [d for d in history if d.action == "snoozed"]
            if exemption_of(row.tags, history) is not None or (snoozed and now - snoozed[-1].at < SNOOZE):
                continue
            chosen.append(row)
        return chosen

    # -- the bill beside the estimate (Cost Explorer, the CUR) ----------------------------------------

    def _today(self) -> date:
        """Today in UTC: the days before it are complete."""
        return self._clock().astimezone(UTC).date()

    def _cost_explorer_lines(self, today: date) -> list[CostLine]:
        """The last 35 days from one GetCostAndUsage request (its pages aside), asked once per UTC day: each request
        costs $0.01."""
        start = today - timedelta(days=CE_DAYS)
        reader = self.billing_sources.cost_explorer
        key = f"cost-explorer:{start}:{today}:{reader.scope if reader is not None else ''}"
        cached = self.store.cached_billing(key, today.isoformat())
        if cached is not None:
            return cost_explorer_lines(json.loads(cached))
        if self.billing_sources.cost_explorer is None:
            raise BillingUnavailable("billing unavailable: no Cost Explorer reader was wired")
        pages = self.billing_sources.cost_explorer.pages(start, today)
        self.store.cache_billing(key, today.isoformat(), json.dumps(pages))
        return cost_explorer_lines(pages)

    def _cur_lines(self, start: date, today: date) -> list[CurLine]:
        """The CUR's ECR lines of the days [start, today), read (and aggregated) once per UTC day, of the accounts
        the scan covers (ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS): the bill compares with the estimate."""
        return [line for line in self._all_cur_lines(start, today)
                if (not self.settings.accounts or line.account_id in self.settings.accounts)
                and line.account_id not in self.settings.exclude_accounts]

    def _all_cur_lines(self, start: date, today: date) -> list[CurLine]:
        reader = self.billing_sources.cur
        if reader is None:
            raise BillingUnavailable("no CUR configured: set ECR_COST_CUR (a CUR 2.0 Parquet export: a path, a glob "
                                     "or s3://bucket/prefix) or ECR_COST_CUR_ATHENA (database.table)")
        key = f"cur:{self.billing_sources.cur_location}:{start}:{today}"
        cached = self.store.cached_billing(key, today.isoformat())
        if cached is not None:
            return [CurLine(date.fromisoformat(d), a, r, res, bool(st), c, u) for d, a, r, res, st, c, u
                    in json.loads(cached)]
        lines = reader.lines(start, today)
        self.store.cache_billing(key, today.isoformat(), json.dumps(
            [[line.day.isoformat(), line.account_id, line.region, line.resource_id, line.storage, line.currency,
              line.usd] for line in lines]))
        return lines

    def _warn_once(self, note: str) -> None:
        if note not in self._billing_warned:
            self._billing_warned.add(note)
            logger.warning("%s", note)

    def billing_summary(self, scan: ScanResult, previous: ScanResult | None,
                        decisions: list[PolicyDecision]) -> BillingSummary:
        """The report's billed figures (ECR_COST_BILLING): never an error; what keeps the bill away is the note."""
        today = self._today()
        estimate = sum(r.monthly_cost_usd for r in scan.repositories)
        if self.settings.billing == "off":
            return unavailable("billing is off (ECR_COST_BILLING=off)",
                               daily_estimate(estimate, today - timedelta(days=1)))
        try:
            if self.settings.billing == "cur":
                bill = cur_service_bill(self._cur_lines(today - timedelta(days=CE_DAYS), today), _estimated(scan))
            else:
                bill = service_bill(self._cost_explorer_lines(today), "cost-explorer")
        except BillingUnavailable as exc:
            note = denied_note() if str(exc) == "denied" else str(exc)
            self._warn_once(note)
            return unavailable(note, daily_estimate(estimate, today - timedelta(days=1)))
        except Exception as exc:  # noqa: BLE001 - the report stands without the bill
            note = f"billing unavailable: {describe(exc)}"
            self._warn_once(note)
            return unavailable(note, daily_estimate(estimate, today - timedelta(days=1)))
        labels = display_names(scan.repositories)
        latest: dict[str, PolicyDecision] = {}
        for decision in decisions:
            if decision.action in (*ADOPTIONS, "rolled_back"):
                latest[decision.arn] = decision
        adoptions = [(labels[arn], arn, d.at) for arn, d in latest.items() if d.action in ADOPTIONS and arn in labels]
        before = sum(r.monthly_cost_usd for r in previous.repositories) if previous else None
        facts = EstateFacts(partial=scan.partial, price_per_gb_month=scan.price_per_gb_month,
                            estimate_change_usd=None if before is None else estimate - before)
        return summarize_bill(bill, today, estimate, adoptions, facts)

    def billing(self, days: int = 30) -> CurBilling:
        """Billed cost per repository from the CUR over the ``days`` complete UTC days ending yesterday, beside the
        latest scan's estimate. Raises BillingUnavailable naming what is missing."""
        today = self._today()
        start = today - timedelta(days=days)
        return cur_billing(self._cur_lines(start, today), _estimated(self.latest()), start,
                           today - timedelta(days=1))

    def repository_bill(self, scan: ScanResult, row: RepositoryCost) -> RepositoryBill | None:
        """What the CUR billed this repository per day (None without a CUR, or when it cannot be read)."""
        if self.billing_sources.cur is None:
            return None
        today = self._today()
        key = (scan.scan_id, scan.generated_at, today)
        memo = self._repository_bills  # one read: listener threads may replace it meanwhile
        if memo is None or memo[0] != key:  # computed once per scan and day, not once per view (App Home)
            try:
                found = cur_billing(self._cur_lines(today - timedelta(days=CE_DAYS), today), _estimated(scan),
                                    today - timedelta(days=CE_DAYS), today - timedelta(days=1))
            except Exception as exc:  # noqa: BLE001 - the detail stands without the bill
                self._warn_once(f"billed cost per repository unavailable: {exc}")
                return None
            memo = self._repository_bills = (key, {r.arn: r for r in found.repositories})
        return memo[1].get(row.arn)


def _estimated(scan: ScanResult) -> list[EstimatedRepository]:
    return [EstimatedRepository(r.arn, r.repository, r.account_id, r.region, r.monthly_cost_usd)
            for r in scan.repositories]
