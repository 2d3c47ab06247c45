"""Lookups: which repository or account a person's words name, in a scan, and the scan's display names."""
from __future__ import annotations

from dataclasses import replace

from .aws.ecr import EcrCollector
from .core.analysis import Summary, display_names, find_account, find_repository, match_account, summarize
from .core.models import PREVIOUS_PERIOD, RepositoryCost, ScanResult
from .scans import ScanService
from .store import Store


class Lookups:
    def __init__(self, scans: ScanService, store: Store, collector: EcrCollector):
        self._scans = scans
        self._store = store
        self._collector = collector
        self._context: tuple[tuple, dict[str, str], dict[str, RepositoryCost]] | None = None

    def find(self, query: str, scan: ScanResult | None = None) -> tuple[ScanResult, RepositoryCost]:
        """The repository NAME (name, region/name or ARN) names; raises AmbiguousOrUnknownName."""
        scan = scan or self._scans.latest()
        return scan, find_repository(scan.repositories, query)

    def find_by_arn(self, arn: str) -> tuple[ScanResult, RepositoryCost] | None:
        scan = self._scans.without_deleted(self._store.latest_scan())
        row = next((r for r in scan.repositories if r.arn == arn), None) if scan else None
        return (scan, row) if scan is not None and row else None

    def summary(self, scan: ScanResult) -> Summary:
        return summarize(scan.repositories)

    def known_account(self, query: str) -> str:
        """The account ID ``query`` names among the accounts the bot knows before scanning: those it can enter
        (its own, ECR_COST_ROLE_ARNS, the organisation), those it cannot (named in their problems), and those of
        the latest scan. Raises UnknownAccount (with the closest names): a typo scans nothing."""
        accounts: dict[str, str | None] = {}
        latest = self._store.latest_scan()
        for row in latest.repositories if latest else []:
            accounts.setdefault(row.account_id, row.account_name)
        entered, problems = self._collector.accounts()
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
        return self.context(scan)[0]

    def context(self, scan: ScanResult) -> tuple[dict[str, str], dict[str, RepositoryCost]]:
        """Display names and last period's rows of ``scan``: computed once per scan, not once per view
        (App Home and the report's nudges build many views of one scan)."""
        key = (scan.scan_id, scan.generated_at, len(scan.repositories))
        context = self._context  # one read: listener threads may replace it meanwhile
        if context is None or context[0] != key:
            previous = self._store.latest_scan(before=scan.generated_at - PREVIOUS_PERIOD)
            rows = {r.arn: r for r in previous.repositories} if previous else {}
            context = self._context = (key, display_names(scan.repositories), rows)
        return context[1], context[2]
