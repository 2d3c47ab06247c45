"""What the Slack surfaces do, without Bolt: look up, authorise, act once, build the messages.

Listeners (commands.py, actions.py, home.py) are thin: they ack, call this, and answer.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from slack_sdk.errors import SlackApiError

from ..adoption import PolicyOperationError, PolicyOperations
from ..config import Settings
from ..core import blocks
from ..core.analysis import AmbiguousOrUnknownName, display_names, find_repository, rank, summarize
from ..core.lifecycle import policy_status
from ..core.models import PolicyDecision, RepositoryCost, RepositoryInventory, ScanResult
from ..store import Store

SNOOZE_DAYS = 30
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """The answer to a click: a message replacing the original, or an ephemeral note (or both)."""

    replace: dict | None = None
    ephemeral: str | None = None
    ephemeral_message: dict | None = None


class SlackService:
    def __init__(self, store: Store, operations: PolicyOperations, settings: Settings,
                 refresh_scan: Callable[[], ScanResult],
                 refresh_repository: Callable[[RepositoryCost], tuple[RepositoryCost, RepositoryInventory]],
                 max_age: timedelta = timedelta(hours=24),
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self._store = store
        self._operations = operations
        self._settings = settings
        self._refresh_scan = refresh_scan
        self._refresh_repository = refresh_repository
        self._max_age = max_age
        self._clock = clock
        self._email_ids: dict[str, str | None] = {}
        self._repo_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._context: tuple[tuple, dict[str, str], dict[str, float]] | None = None

    # -- data -----------------------------------------------------------------------------

    def latest(self, allow_stale: bool = True) -> ScanResult | None:
        """The latest scan; rescans when there is none, or when it is stale and ``allow_stale`` is off.
        One rescan at a time: while one runs, others answer from the stale scan (or wait when there is none)."""
        latest = self._store.latest_scan()
        if latest is not None and (allow_stale or not self.is_stale(latest)):
            return latest
        if self._refresh_lock.acquire(blocking=latest is None):
            try:
                return self._refresh_scan()
            finally:
                self._refresh_lock.release()
        return latest

    def is_stale(self, scan: ScanResult | None) -> bool:
        return scan is None or self._clock() - scan.generated_at > self._max_age

    def _scan_context(self, scan: ScanResult) -> tuple[dict[str, str], dict[str, float]]:
        """Display names and last period's costs of ``scan``: computed once per scan, not once per view
        (App Home and the report's nudges build many views of one scan)."""
        key = (scan.scan_id, scan.generated_at, len(scan.repositories))
        context = self._context  # one read: listener threads may replace it meanwhile
        if context is None or context[0] != key:
            previous = self._store.latest_scan(before=scan.generated_at - timedelta(days=6))
            costs = {r.arn: r.monthly_cost_usd for r in previous.repositories} if previous else {}
            context = self._context = (key, display_names(scan.repositories), costs)
        return context[1], context[2]

    def view(self, scan: ScanResult, row: RepositoryCost,
             inventory: RepositoryInventory | None = None) -> blocks.RepositoryView:
        """``inventory``: a fresh read of the repository already made, to preview from."""
        labels, previous_costs = self._scan_context(scan)
        try:
            found = self._operations.preview(row, scan_id=scan.scan_id, inventory=inventory)
            expiring = sum(1 for d in found.result.decisions if d.action == "expire")
            freed, savings = found.result.bytes_freed, found.monthly_savings_usd
        except PolicyOperationError:
            expiring = freed = savings = None
        previous = previous_costs.get(row.arn)
        history = self._store.decisions(row.arn)
        adoption = self._adoption(row.arn)
        position = next((i for i, r in enumerate(scan.repositories, 1) if r.arn == row.arn), len(scan.repositories))
        return blocks.RepositoryView(
            row=row, label=labels.get(row.arn, row.repository), rank=position, rank_of=len(scan.repositories),
            lifecycle_status=policy_status(row.lifecycle_policy, self._settings.base_policy),
            expiring_count=expiring, bytes_freed=freed, savings_usd=savings,
            change_usd=None if previous is None else row.monthly_cost_usd - previous,
            last_decision=history[-1] if history else None,
            adopted=adoption is not None and adoption.action == "adopted", scanned_at=scan.generated_at)

    def _adoption(self, arn: str) -> PolicyDecision | None:
        """The latest adoption or rollback: what Adopt and Roll back act on (snoozes and declines aside)."""
        history = self._store.decisions(arn, actions=("adopted", "rolled_back"))
        return history[-1] if history else None

    # -- /ecr-cost ------------------------------------------------------------------------

    def ranking_message(self, scan: ScanResult) -> dict:
        return blocks.ranking(scan.repositories, display_names(scan.repositories), summarize(scan.repositories),
                              scan.generated_at, scan.partial)

    def detail_message(self, scan: ScanResult, query: str) -> dict:
        """The detail from the latest scan, or from a fresh read of that one repository when the scan is old."""
        try:
            row = find_repository(scan.repositories, query)
        except AmbiguousOrUnknownName as exc:
            return blocks.not_found(query, exc.candidates)
        inventory = None
        if self.is_stale(scan):
            try:
                row, inventory = self._refresh_repository(row)
            except Exception:  # noqa: BLE001 - AWS unreachable: the snapshot is still worth showing
                logger.warning("fresh read of %s failed; answering from the scan of %s", row.arn,
                               scan.generated_at, exc_info=True)
            else:
                others = [r for r in scan.repositories if r.arn != row.arn]
                scan = replace(scan, repositories=rank([*others, row]), generated_at=self._clock())
        return blocks.repository_detail(self.view(scan, row, inventory))

    def home_view(self, user_id: str, client) -> dict:
        scan = self.latest()
        rows = scan.repositories if scan else []
        own = [self.view(scan, r) for r in rows if self.owns(user_id, r, client)]
        return blocks.home_view(own, summarize(rows), user_id in self._settings.admins)

    def find_by_arn(self, arn: str) -> tuple[ScanResult, RepositoryCost] | None:
        scan = self.latest()
        row = next((r for r in scan.repositories if r.arn == arn), None) if scan else None
        return (scan, row) if row else None

    # -- authorisation --------------------------------------------------------------------

    def owns(self, user_id: str, row: RepositoryCost, client) -> bool:
        """Named in the repository's owner tag: by Slack user ID, or by an email that Slack maps to them."""
        if user_id in row.owners:
            return True
        return any(self._user_id_for_email(email, client) == user_id for email in row.owners if "@" in email)

    def owner_user_ids(self, row: RepositoryCost, client) -> list[str]:
        """The owners as Slack user IDs (emails looked up; unknown emails left out)."""
        ids = [o if "@" not in o else self._user_id_for_email(o, client) for o in row.owners]
        return list(dict.fromkeys(i for i in ids if i))

    def detail_for(self, scan: ScanResult, row: RepositoryCost) -> dict:
        return blocks.repository_detail(self.view(scan, row))

    def may_change(self, user_id: str, row: RepositoryCost, client) -> bool:
        return user_id in self._settings.admins or self.owns(user_id, row, client)

    def _user_id_for_email(self, email: str, client) -> str | None:
        if email not in self._email_ids:
            try:
                self._email_ids[email] = client.users_lookupByEmail(email=email)["user"]["id"]
            except SlackApiError as exc:
                if exc.response.get("error") != "users_not_found":
                    logger.warning("users.lookupByEmail failed for %s: %s", email, exc.response.get("error"))
                    return None  # rate limited, missing scope...: ask again next time
                self._email_ids[email] = None  # not in this workspace: cached too
        return self._email_ids[email]

    def refusal(self, row: RepositoryCost) -> str:
        owners = blocks.owners_text(row.owners)
        return f"Only the owners ({owners}) or an admin can change *{blocks.escape(row.repository)}*. Nothing was changed."

    # -- clicks ---------------------------------------------------------------------------

    def _lock(self, arn: str) -> threading.Lock:
        with self._locks_guard:
            return self._repo_locks.setdefault(arn, threading.Lock())

    def act(self, action_id: str, arn: str, user_id: str, client, click_id: str) -> Outcome:
        """One button press, acted on at most once (Slack retries and double clicks included)."""
        found = self.find_by_arn(arn)
        if found is None:
            return Outcome(ephemeral="That repository is no longer in the latest scan; nothing was changed.")
        scan, row = found
        if action_id == blocks.PREVIEW:
            return self._preview(scan, row)
        if not self.may_change(user_id, row, client):
            return Outcome(ephemeral=self.refusal(row))
        if not self._store.claim_click(click_id):
            return Outcome()  # the same click delivered again: already handled
        with self._lock(arn):
            try:
                note = self._change(action_id, row, user_id)
            except PolicyOperationError as exc:
                problems = "".join(f"\n• {blocks.escape(p)}" for p in exc.problems)
                return Outcome(ephemeral=f":x: {blocks.escape(str(exc))}{problems}")
        scan = self._store.latest_scan() or scan
        row = next((r for r in scan.repositories if r.arn == arn), row)
        adoption = self._adoption(arn)
        if adoption is not None and adoption.at > scan.generated_at:  # the scan predates the change
            row = replace(row, lifecycle_policy=adoption.policy_after,
                          has_lifecycle_policy=adoption.policy_after is not None)
        return Outcome(replace=blocks.repository_detail(self.view(scan, row)), ephemeral=note)

    def _change(self, action_id: str, row: RepositoryCost, user_id: str) -> str | None:
        """The change itself; a repeat of what was just done is a no-op with a note."""
        adoption = self._adoption(row.arn)
        if action_id == blocks.ADOPT:
            if adoption and adoption.action == "adopted":
                return f"Already adopted by {blocks.mention(adoption.user_id)}; nothing was changed."
            self._operations.apply(row, None, user_id, "slack")
        elif action_id == blocks.ROLLBACK:
            if not adoption or adoption.action != "adopted":
                return "Nothing to roll back; nothing was changed."
            self._operations.rollback(row, user_id, "slack")
        elif action_id in (blocks.SNOOZE, blocks.DECLINE):
            action = "snoozed" if action_id == blocks.SNOOZE else "declined"
            same = self._store.decisions(row.arn, actions=(action,))
            if same and self._clock() - same[-1].at < timedelta(days=SNOOZE_DAYS):
                return None
            self._operations.record_choice(row, action, user_id, "slack")
        else:
            return f"Unknown action {blocks.escape(action_id)}; nothing was changed."
        return None

    def _preview(self, scan: ScanResult, row: RepositoryCost) -> Outcome:
        """Anyone may look: the images the base policy would expire."""
        try:
            found = self._operations.preview(row, scan_id=scan.scan_id)
        except PolicyOperationError as exc:
            return Outcome(ephemeral=f":x: {blocks.escape(str(exc))}")
        expiring = [(d.image.digest, d.image.tags, d.image.pushed_at, d.rule_priority)
                    for d in found.result.decisions if d.action == "expire"]
        return Outcome(ephemeral_message=blocks.preview_message(self.view(scan, row), expiring))
