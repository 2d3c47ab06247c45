"""The weekly report job built over a store of known rows, posting to the Slack stand-in (AWS never called)."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.config import load_settings
from bot.core.analysis import rank
from bot.core.models import PolicyDecision, ScanResult
from bot.wiring import build, build_report_job, build_slack
from tests.helpers.rows import row
from tests.slack_standin import SlackStandIn

GB = 2**30
PERIOD = "2026-11-23T09:00:00+00:00"  # the period of the job's default clock, 2026-11-27 12:00 UTC
T0 = datetime(2026, 11, 16, 9, tzinfo=UTC)
BASE_POLICY = load_settings({}).base_policy


def crafted():
    """Two weekly scans a week apart (T0, T0 + 7 days) and an adoption of the base policy between them."""
    last_week = rank([row("a", 10 * GB), row("b", 4 * GB), row("c", 1 * GB, unused=True)])
    this_week = rank([row("a", 12 * GB), row("b", 1 * GB, has_lifecycle_policy=True,
                                             lifecycle_policy=json.dumps(BASE_POLICY)),
                      row("c", 1 * GB, unused=True), row("d", 3 * GB, owners=("U0DOWNER1",))])
    adopted = PolicyDecision(7, "b", "123456789012", "us-east-1", row("b", 0).arn, "adopted", "U0BOWNER1", "slack",
                             T0 + timedelta(days=3), None, json.dumps(BASE_POLICY), 0.3)
    return (ScanResult(T0, 0.1, last_week, [], []), ScanResult(T0 + timedelta(days=7), 0.1, this_week, [], []),
            adopted)


def posts(standin, channel):
    return [a for m, a in standin.calls if m == "chat.postMessage" and a.get("channel") == channel]


def job_parts(tmp_path):
    """Yields (make_job, the stand-in, the store, the built application); the `job_parts` fixture."""
    standin = SlackStandIn(emails={"owner@example.com": "U0EMAILOW"})
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-t", "SLACK_API_URL": standin.api_url,
                              "ECR_COST_REPORT_CHANNEL": "C0REPORTS"})
    settings = replace(settings, db_path=str(tmp_path / "s.db"))
    built = build(settings, session_factory=lambda role: None)  # AWS is never called: scans come from the store
    store = built.store
    _, directory, client = build_slack(built)

    def stored_scan() -> ScanResult:
        rows = rank([row("big", 9 * GB, owners=("U0BIGOWN1", "owner@example.com")), row("mid", 5 * GB),
                     row("small", GB, owners=("U0SMALL01",))])
        scan_id = store.begin_scan(datetime.now(UTC), 0.1, built.application.scan_scope())
        for r in rows:
            store.save_repository(scan_id, r, [])
        result = ScanResult(datetime.now(UTC), 0.1, rows, [], [], scan_id=scan_id)
        store.finish_scan(result)
        return result

    def make_job(clock=lambda: datetime(2026, 11, 27, 12, tzinfo=UTC), scan_now=stored_scan, **options):
        return build_report_job(built, client, directory, scan_now=scan_now, clock=clock, sleep=lambda s: None,
                                **options)

    yield make_job, standin, store, built
    built.close()
    standin.stop()
