"""The weekly report job: claim the period, scan, build, post with the chart, nudge owners.

Exactly one report per period, whatever restarts or extra processes: the period is claimed in
the store (a row keyed by the period) before anything is posted.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from slack_sdk.errors import SlackApiError

from .adoption import PolicyOperationError, PolicyOperations
from .config import Settings
from .core import blocks
from .core.models import ScanResult
from .core.report import WeeklyReport, build_report, report_message
from .store import Store

logger = logging.getLogger(__name__)
NUDGE_TOP = 10  # owners of the costliest repositories without a policy get a direct message
SNOOZE = timedelta(days=30)
# errors with which Slack says it did not post: safe to try again (anything else could duplicate the report)
RETRYABLE_POST_ERRORS = {"ratelimited", "service_unavailable", "request_timeout"}


def period_start(settings: Settings, now: datetime) -> datetime:
    """The schedule's last fire time at or before ``now``: the period a report belongs to."""
    trigger = CronTrigger.from_crontab(settings.schedule, timezone=settings.timezone)
    now = now.astimezone(ZoneInfo(settings.timezone))
    for window in (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=8),
                   timedelta(days=32), timedelta(days=370), timedelta(days=5 * 366)):
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is not None and fire <= now:
            while (following := trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))) and following <= now:
                fire = following
            return fire
    return now  # a schedule that never fired in five years: the period starts now


def build_weekly_report(store: Store, operations: PolicyOperations, settings: Settings, scan: ScanResult,
                        period: datetime) -> WeeklyReport:
    previous = store.latest_scan(before=scan.generated_at - timedelta(days=6))
    decisions = store.decisions()
    cost_at_adoption = {d.id: cost for d in decisions if d.action == "adopted"
                        and (cost := store.cost_before(d.arn, d.at)) is not None}
    base_savings = {}
    for row in scan.repositories:
        if not row.has_lifecycle_policy:
            try:
                base_savings[row.arn] = operations.preview(row, scan_id=scan.scan_id).monthly_savings_usd
            except PolicyOperationError as exc:
                logger.warning("no base policy preview for %s: %s", row.arn, exc)
    return build_report(scan, previous, decisions, cost_at_adoption, base_savings, settings.base_policy,
                        store.cost_trend(), period)


class ReportJob:
    def __init__(self, store: Store, operations: PolicyOperations, settings: Settings, client,
                 scan_now: Callable[[], ScanResult], detail_for: Callable[[ScanResult, object], dict],
                 owner_ids: Callable[[object, object], list[str]],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 sleep: Callable[[float], None] = time.sleep):
        self._store, self._operations, self._settings = store, operations, settings
        self._client, self._scan_now = client, scan_now
        self._detail_for, self._owner_ids = detail_for, owner_ids
        self._clock, self._sleep = clock, sleep
        self._who = f"{socket.gethostname()}:{os.getpid()}"

    def current_period(self) -> str:
        return period_start(self._settings, self._clock()).isoformat()

    def catch_up(self) -> str:
        """At start-up: the current period's report, if nobody has claimed it yet."""
        if self._store.period_run(self.current_period()) is not None:
            return "this period's report was already handled"
        return self.run()

    def run(self) -> str:
        period = self.current_period()
        if not self._store.claim_period(period, self._who):
            return f"the report for the period of {period} was already claimed"
        try:
            scan = self._scan_now()
            report = build_weekly_report(self._store, self._operations, self._settings, scan,
                                         datetime.fromisoformat(period))
        except Exception as exc:  # noqa: BLE001 - nothing was posted: the claim is given back
            logger.exception("building the weekly report for %s failed", period)
            self._store.release_period(period)
            return f"the report for the period of {period} failed before posting (a later run may retry): {exc}"
        try:
            ts = self._post(report)
        except Exception as exc:  # noqa: BLE001 - it may have reached Slack: recorded, never posted again
            logger.exception("posting the weekly report for %s failed", period)
            self._store.finish_period(period, "failed", error=str(exc)[:2000])
            return f"the report for the period of {period} failed: {exc}"
        self._store.finish_period(period, "posted", message_ts=ts)
        self._upload_chart(report, ts)
        sent = self._nudge(scan, period)
        return f"report for the period of {period} posted (ts {ts}); {sent} owner messages sent"

    def _post(self, report: WeeklyReport) -> str:
        """chat.postMessage with backoff; slack_sdk's handlers already retry rate limits and dropped connections."""
        message = report_message(report)
        for attempt in range(4):
            try:
                return self._client.chat_postMessage(channel=self._settings.report_channel, **message)["ts"]
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                if error not in RETRYABLE_POST_ERRORS or attempt == 3:
                    raise
                logger.warning("posting the report failed (%s); retrying", error)
                self._sleep(2 ** attempt)
        raise AssertionError("unreachable")

    def _upload_chart(self, report: WeeklyReport, ts: str) -> None:
        """Into the report's thread; a failure is logged and never blocks the report."""
        try:
            from .chart import chart_png

            self._client.files_upload_v2(channel=self._settings.report_channel, thread_ts=ts,
                                         content=chart_png(report), filename="ecr-cost-report.png",
                                         title="ECR cost: top repositories and total trend")
        except Exception:  # noqa: BLE001 - the report is already posted
            logger.exception("uploading the report chart failed; the report stands without it")

    def _nudge(self, scan: ScanResult, period: str) -> int:
        """A DM to the owners of the costliest repositories without a policy: once per repo, owner, period."""
        sent = 0
        now = self._clock()
        for row in [r for r in scan.repositories if not r.has_lifecycle_policy][:NUDGE_TOP]:
            last = (self._store.decisions(row.arn, actions=("declined", "snoozed", "adopted", "rolled_back"))
                    or [None])[-1]
            if last and (last.action == "declined" or (last.action == "snoozed" and now - last.at < SNOOZE)):
                continue
            for user_id in self._owner_ids(row, self._client):
                if not self._store.claim_nudge(period, row.arn, user_id):
                    continue
                message = self._detail_for(scan, row)
                intro = blocks.section(f"Hi {blocks.mention(user_id)}: *{blocks.escape(row.repository)}* is among "
                                       f"the costliest ECR repositories and has no lifecycle policy.")
                try:
                    self._client.chat_postMessage(channel=user_id, text=message["text"],
                                                  blocks=[intro, *message["blocks"]][:blocks.MAX_BLOCKS])
                    sent += 1
                except SlackApiError:
                    logger.exception("direct message to %s about %s failed", user_id, row.arn)
        return sent
