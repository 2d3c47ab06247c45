"""The bill beside the estimate: Cost Explorer's ECR line or the CUR's per-repository lines, each source read once
per UTC day (a JSON cache in the store), never failing the report or the detail it is part of."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from .aws.billing import BillingSources
from .config import Settings
from .core.analysis import display_names
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
from .core.models import ADOPTIONS, PolicyDecision, RepositoryCost, ScanResult
from .errors import BillingUnavailable, describe
from .scans import ScanService
from .store import Store

logger = logging.getLogger(__name__)


class BillingService:
    def __init__(self, store: Store, scans: ScanService, settings: Settings, sources: BillingSources | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._store = store
        self._scans = scans
        self._settings = settings
        self._sources = sources or BillingSources()
        self._clock = clock
        self._warned: set[str] = set()
        self._repository_bills: tuple[tuple, dict[str | None, RepositoryBill]] | None = None

    def _today(self) -> date:
        """Today in UTC: the days before it are complete."""
        return self._clock().astimezone(UTC).date()

    def _cost_explorer_lines(self, today: date) -> list[CostLine]:
        """The last 35 days from one GetCostAndUsage request (its pages aside), asked once per UTC day: each request
        costs $0.01."""
        start = today - timedelta(days=CE_DAYS)
        reader = self._sources.cost_explorer
        key = f"cost-explorer:{start}:{today}:{reader.scope if reader is not None else ''}"
        cached = self._store.cached_billing(key, today.isoformat())
        if cached is not None:
            return cost_explorer_lines(json.loads(cached))
        if self._sources.cost_explorer is None:
            raise BillingUnavailable("billing unavailable: no Cost Explorer reader was wired")
        pages = self._sources.cost_explorer.pages(start, today)
        self._store.cache_billing(key, today.isoformat(), json.dumps(pages))
        return cost_explorer_lines(pages)

    def _cur_lines(self, start: date, today: date) -> list[CurLine]:
        """The CUR's ECR lines of the days [start, today), read (and aggregated) once per UTC day, of the accounts
        the scan covers (ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS): the bill compares with the estimate."""
        return [line for line in self._all_cur_lines(start, today)
                if (not self._settings.accounts or line.account_id in self._settings.accounts)
                and line.account_id not in self._settings.exclude_accounts]

    def _all_cur_lines(self, start: date, today: date) -> list[CurLine]:
        reader = self._sources.cur
        if reader is None:
            raise BillingUnavailable("no CUR configured: set ECR_COST_CUR (a CUR 2.0 Parquet export: a path, a glob "
                                     "or s3://bucket/prefix) or ECR_COST_CUR_ATHENA (database.table)")
        key = f"cur:{self._sources.cur_location}:{start}:{today}"
        cached = self._store.cached_billing(key, today.isoformat())
        if cached is not None:
            return [CurLine(date.fromisoformat(d), a, r, res, bool(st), c, u) for d, a, r, res, st, c, u
                    in json.loads(cached)]
        lines = reader.lines(start, today)
        self._store.cache_billing(key, today.isoformat(), json.dumps(
            [[line.day.isoformat(), line.account_id, line.region, line.resource_id, line.storage, line.currency,
              line.usd] for line in lines]))
        return lines

    def _warn_once(self, note: str) -> None:
        if note not in self._warned:
            self._warned.add(note)
            logger.warning("%s", note)

    def billing_summary(self, scan: ScanResult, previous: ScanResult | None,
                        decisions: list[PolicyDecision]) -> BillingSummary:
        """The report's billed figures (ECR_COST_BILLING): never an error; what keeps the bill away is the note."""
        today = self._today()
        estimate = sum(r.monthly_cost_usd for r in scan.repositories)
        if self._settings.billing == "off":
            return unavailable("billing is off (ECR_COST_BILLING=off)",
                               daily_estimate(estimate, today - timedelta(days=1)))
        try:
            if self._settings.billing == "cur":
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
        return cur_billing(self._cur_lines(start, today), _estimated(self._scans.latest()), start,
                           today - timedelta(days=1))

    def repository_bill(self, scan: ScanResult, row: RepositoryCost) -> RepositoryBill | None:
        """What the CUR billed this repository per day (None without a CUR, or when it cannot be read)."""
        if self._sources.cur is None:
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
