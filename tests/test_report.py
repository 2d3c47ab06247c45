"""The weekly report: content, limits, chart, posting once per period, nudges."""
from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from matplotlib import image as mpimg

from bot.config import load_settings
from bot.core.analysis import rank
from bot.core.models import PolicyDecision, PolicySavings, ScanProblem, ScanResult
from bot.core.report import build_report
from bot.jobs import period_start
from bot.render.chart import chart_figure, chart_png
from bot.render.report import report_json, report_message, report_text
from bot.store import _iso
from bot.wiring import build_report_job, build_slack
from tests.helpers.report import BASE_POLICY as BASE
from tests.helpers.report import PERIOD, T0, crafted, posts
from tests.helpers.rows import huge_estate, row
from tests.helpers.slack import check_limits

GB = 2**30


def adopting(usd: float, expiring: int = 3, images: int = 10) -> PolicySavings:
    """What adopting the base policy frees (the protected form), with the policy as written freeing more."""
    return PolicySavings(images, expiring, int(usd * 10 * GB), usd, expiring + 2, 2, int(usd * 20 * GB), usd * 2)


def test_report_content_order_totals_change_and_realised_savings():
    previous, current, adopted = crafted()
    report = build_report(current, previous, [adopted], {7: 0.4},
                          {row("a", 0).arn: adopting(0.5), row("d", 0).arn: adopting(0.1)}, BASE,
                          [(T0, 1.5), (T0 + timedelta(days=7), 1.7)], T0 + timedelta(days=7))
    assert [line.label for line in report.top] == ["a", "d", "b", "c"]
    assert report.summary.monthly_cost_usd == pytest.approx(1.7)
    assert report.change_usd == pytest.approx(1.7 - 1.5)
    a, d, b, c = report.top
    assert a.change_usd == pytest.approx(0.2) and d.change_usd is None and b.change_usd == pytest.approx(-0.3)
    assert b.policy == "base" and a.policy == "none"
    assert report.unused == ["c"] and report.without_policy_count == 3
    assert report.base_policy_savings_usd == pytest.approx(0.6)
    [saving] = report.realised
    assert (saving.label, saving.cost_at_adoption_usd, saving.cost_now_usd) == ("b", 0.4, pytest.approx(0.1))
    assert report.realised_total_usd == pytest.approx(0.3)

    text = report_text(report)
    assert text.index(" a ") < text.index(" d ") < text.index(" b ")
    assert "+$0.20" in text and "new" in text
    assert "saved by policies adopted through the bot: estimated $0.30/month" in text
    doc = report_json(report)
    assert doc["summary"]["change_usd"] == pytest.approx(0.2) and doc["realised_savings_usd"] == pytest.approx(0.3)
    message = report_message(report)
    check_limits(message)
    assert "$1.70/month" in message["text"] and "+$0.20 vs last week" in message["text"]


def test_a_rolled_back_adoption_is_no_saving_and_a_partial_scan_is_flagged():
    previous, current, adopted = crafted()
    rolled = replace(adopted, id=8, action="rolled_back", at=adopted.at + timedelta(days=1))
    current = replace(current, errors=[ScanProblem("123456789012", "eu-west-1", "AccessDenied: no")])
    report = build_report(current, previous, [adopted, rolled], {7: 0.4}, {}, BASE, [], T0)
    assert report.realised == [] and report.partial
    message = json.dumps(report_message(report))
    assert "Partial result" in message and "eu-west-1" in message


def test_report_message_holds_the_limits_for_10000_repositories():
    rows = huge_estate()
    scan = ScanResult(T0, 0.1, rows, [ScanProblem("1", f"r{n}", "<!channel> " * 50) for n in range(40)], [])
    decisions = [PolicyDecision(n, r.repository, r.account_id, r.region, r.arn, "adopted", "U012AB3CD", "slack", T0,
                                None, "{}", 1.0) for n, r in enumerate(rows[:500])]
    report = build_report(scan, scan, decisions, {n: 5.0 for n in range(500)}, {r.arn: adopting(1.0) for r in rows},
                          BASE, [(T0, 1.0)] * 26, T0)
    message = report_message(report)
    check_limits(message)
    assert "<!channel>" not in json.dumps(message)


def test_the_chart_is_a_png_showing_the_data():
    previous, current, adopted = crafted()
    report = build_report(current, previous, [adopted], {7: 0.4}, {}, BASE,
                          [(T0, 1.5), (T0 + timedelta(days=7), 1.7)], T0)
    png = chart_png(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(io.BytesIO(png))
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 1000
    bars, trend = chart_figure(report).axes
    assert [round(p.get_width(), 6) for p in bars.patches] == [round(line.row.monthly_cost_usd, 6)
                                                               for line in report.top]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["a", "d", "b", "c"]
    assert list(trend.lines[0].get_ydata()) == [1.5, 1.7]


@pytest.mark.parametrize("schedule, now, expected", [
    ("0 9 * * mon", datetime(2026, 11, 27, 15, tzinfo=UTC), datetime(2026, 11, 23, 9, tzinfo=UTC)),
    ("0 9 * * mon", datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 23, 9, tzinfo=UTC)),
    ("* * * * *", datetime(2026, 11, 27, 15, 4, 31, tzinfo=UTC),
     datetime(2026, 11, 27, 15, 4, tzinfo=UTC)),
    ("0 0 1 1 *", datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_the_period_is_the_schedules_last_fire_time(schedule, now, expected):
    settings = load_settings({"ECR_COST_SCHEDULE": schedule})
    assert period_start(settings, now) == expected


def test_the_period_follows_the_time_zone():
    settings = load_settings({"ECR_COST_TIMEZONE": "America/New_York"})
    start = period_start(settings, datetime(2026, 11, 27, 15, tzinfo=UTC))
    assert start.isoformat() == "2026-11-23T09:00:00-05:00"


# -- the job, against the Slack stand-in ----------------------------------------------------------

def test_one_report_per_period_with_its_chart_in_the_thread_and_nudges_capped(job_parts):
    make_job, standin, store, _ = job_parts
    outcome = make_job().run()
    assert "posted" in outcome
    [report] = posts(standin, "C0REPORTS")
    assert "ECR cost report" in report["text"]
    complete = next(a for m, a in standin.calls if m == "files.completeUploadExternal")
    assert complete["channel_id"] == "C0REPORTS" and complete["thread_ts"]
    assert list(standin.uploads.values())[0][:8] == b"\x89PNG\r\n\x1a\n"
    # the owners of the costliest repositories without a policy, emails resolved, once each
    assert sorted(a["channel"] for m, a in standin.calls if m == "chat.postMessage" and a["channel"] != "C0REPORTS") \
        == ["U0BIGOWN1", "U0EMAILOW", "U0SMALL01"]
    dm = next(a for m, a in standin.calls if m == "chat.postMessage" and a["channel"] == "U0BIGOWN1")
    assert "adopt_base_policy" in json.dumps(dm["blocks"])

    assert "already claimed" in make_job().run()  # same period, another run (a restart, a replica)
    assert "already handled" in make_job().catch_up()
    assert len(posts(standin, "C0REPORTS")) == 1
    next_week = make_job(clock=lambda: datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert "posted" in next_week.catch_up()  # a period nobody reported yet: posted at start-up
    assert len(posts(standin, "C0REPORTS")) == 2


def choice(name: str, action: str, user_id: str) -> PolicyDecision:
    r = row(name, 0)
    return PolicyDecision(None, r.repository, r.account_id, r.region, r.arn, action, user_id, "slack",
                          datetime.now(UTC), None, None, None)


def test_snoozed_and_declined_repositories_get_no_nudge(job_parts):
    make_job, standin, store, _ = job_parts
    store.record_decision(choice("big", "declined", "U0BIGOWN1"))
    store.record_decision(choice("small", "snoozed", "U0SMALL01"))
    make_job().run()
    assert [a["channel"] for m, a in standin.calls if m == "chat.postMessage"] == ["C0REPORTS"]


def test_a_failed_upload_never_blocks_the_report(job_parts):
    make_job, standin, store, _ = job_parts
    standin.fail_methods["files.getUploadURLExternal"] = "internal_error"
    assert "posted" in make_job().run()
    assert len(posts(standin, "C0REPORTS")) == 1
    assert store.period_run("2026-11-23T09:00:00+00:00")["status"] == "posted"


@pytest.mark.parametrize("error, attempts, hint", [("service_unavailable", 4, "Slack's error reference"),
                                                   ("not_in_channel", 1, "/invite"),
                                                   ("channel_not_found", 1, "ECR_COST_REPORT_CHANNEL"),
                                                   ("invalid_auth", 1, "check the token")])
def test_slack_saying_no_gives_the_period_back_with_a_hint_so_a_later_run_posts(job_parts, error, attempts, hint):
    make_job, standin, store, _ = job_parts
    standin.fail_methods["chat.postMessage"] = error
    outcome = make_job().run()
    assert "was not posted" in outcome and error in outcome and hint in outcome
    assert len([m for m, _ in standin.calls if m == "chat.postMessage"]) == attempts  # with backoff when it passes
    assert store.period_run("2026-11-23T09:00:00+00:00") is None  # not "failed for good"
    standin.fail_methods.clear()  # e.g. after /invite @ecr-cost
    assert "posted (ts" in make_job().run()
    assert len(posts(standin, "C0REPORTS")) == attempts + 1  # the refused attempts, then the one that posted
    assert store.period_run("2026-11-23T09:00:00+00:00")["status"] == "posted"


def test_a_run_that_fails_before_posting_gives_the_period_back(job_parts):
    make_job, standin, store, operations = job_parts
    def failing_scan():
        raise RuntimeError("AWS is down")

    assert "failed before posting" in make_job(scan_now=failing_scan).run()
    assert store.period_run("2026-11-23T09:00:00+00:00") is None
    assert "first one is due" in make_job().catch_up()  # never posted: a first start catches nothing up
    assert "posted" in make_job().run()


def test_the_job_reports_from_a_recent_complete_scan_and_rescans_an_older_one(job_parts):
    """ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES (60): a scan made minutes ago is the report's; one older is not."""
    make_job, standin, store, built = job_parts
    scans = []

    def counted():
        scans.append(1)
        raise RuntimeError("scanned")

    assert "failed before posting" in make_job(scan_now=counted).run() and len(scans) == 1  # nothing stored yet
    made = job_parts_scan(store, built.application.scan_scope())
    assert "posted" in make_job(scan_now=counted).run() and len(scans) == 1  # the recent scan, no new one
    store.db.execute("update scans set generated_at = ? where id = ?",
                     [_iso(made.generated_at - timedelta(minutes=61)), made.scan_id])
    store.db.conn.commit()
    next_week = make_job(scan_now=counted, clock=lambda: datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert "failed before posting" in next_week.run() and len(scans) == 2  # 61 minutes old: scanned again


def job_parts_scan(store, scope: str | None = None) -> ScanResult:
    rows = rank([row("big", 9 * GB, owners=("U0BIGOWN1",)), row("small", GB)])
    scan_id = store.begin_scan(datetime.now(UTC), 0.1, scope)
    for r in rows:
        store.save_repository(scan_id, r, [])
    result = ScanResult(datetime.now(UTC), 0.1, rows, [], [], scan_id=scan_id)
    store.finish_scan(result)
    return result


def test_a_claim_whose_holder_died_is_taken_over_after_the_lease(job_parts):
    make_job, standin, store, _ = job_parts
    assert store.claim_period(PERIOD, "crashed:1") == "new"
    assert store.claim_period(PERIOD, "other:2") is None
    assert store.claim_period(PERIOD, "other:2", lease=timedelta(seconds=0)) == "taken over"


class AnswerLost:
    """A Web API client whose chat.postMessage reaches Slack (or not) and then loses the answer."""

    def __init__(self, client, reach_slack: bool):
        self._client, self._reach = client, reach_slack

    def __getattr__(self, name):
        return getattr(self._client, name)

    def chat_postMessage(self, **kwargs):
        if self._reach:
            self._client.chat_postMessage(**kwargs)
        raise TimeoutError("The read operation timed out")


@pytest.mark.parametrize("reached, history_readable, posts_in_the_end", [
    (True, True, 1),    # it did post: found by its metadata, never posted twice
    (False, True, 1),   # it did not: the next run posts it
    (True, False, 1),   # cannot tell: not posted again, and the outcome says which scope would tell
])
def test_a_post_whose_answer_was_lost_is_checked_against_the_channel_before_posting_again(
        job_parts, reached, history_readable, posts_in_the_end):
    make_job, standin, store, built = job_parts
    _, directory, client = build_slack(built)
    lost = build_report_job(built, AnswerLost(client, reached), directory, scan_now=make_job()._scan_now,
                            clock=lambda: datetime(2026, 11, 27, 12, tzinfo=UTC), sleep=lambda s: None)
    assert "may not have been posted" in lost.run()
    assert store.period_run(PERIOD)["status"] == "maybe_posted"
    if not history_readable:
        standin.fail_methods["conversations.history"] = "missing_scope"
    outcome = make_job().catch_up()  # a restart, or the next run
    successful = [a for m, a in standin.calls if m == "chat.postMessage" and a.get("channel") == "C0REPORTS"]
    assert len(successful) == posts_in_the_end
    if reached and history_readable:
        assert "already posted" in outcome and store.period_run(PERIOD)["status"] == "posted"
    elif not reached:
        assert "posted (ts" in outcome and store.period_run(PERIOD)["status"] == "posted"
    else:
        assert "channels:history" in outcome and store.period_run(PERIOD)["status"] == "maybe_posted"


def test_the_claim_is_kept_alive_while_a_long_run_is_so_no_replica_takes_over(job_parts):
    make_job, standin, store, _ = job_parts
    scanning, finish = threading.Event(), threading.Event()

    def long_scan():
        scanning.set()
        assert finish.wait(timeout=30)
        return make_job()._scan_now()

    job = make_job(scan_now=long_scan, heartbeat_seconds=0.05)
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(job.run()))
    runner.start()
    assert scanning.wait(timeout=10)
    claimed = datetime.fromisoformat(store.period_run(PERIOD)["claimed_at"])
    deadline = time.monotonic() + 10  # wait (bounded) until the run has outlived a 1-second lease
    while datetime.now(UTC) - claimed < timedelta(seconds=1.5) and time.monotonic() < deadline:
        finish.wait(0.05)
    assert store.claim_period(PERIOD, "replica:2:x", lease=timedelta(seconds=1)) is None  # the heartbeat held it
    finish.set()
    runner.join(timeout=30)
    assert "posted (ts" in outcome[0]
    assert len(posts(standin, "C0REPORTS")) == 1


def test_the_first_start_posts_nothing_and_says_when_the_first_report_is_due(job_parts):
    make_job, standin, store, _ = job_parts
    outcome = make_job().catch_up()  # a fresh database: no report was ever posted
    assert "first one is due 2026-11-30T09:00:00Z" in outcome and "report --post" in outcome
    assert posts(standin, "C0REPORTS") == [] and store.period_run(PERIOD) is None
    assert not [a for m, a in standin.calls if m == "chat.postMessage"]  # no owner DMs either


def test_savings_realised_are_estimated_and_billed_on_the_projections_basis():
    """Each adoption: the stored cost before and now (the projection's basis), the projection recorded at adoption,
    and with a per-repository bill (the CUR) the billed storage saved: "estimated $X, billed $Y"."""
    from bot.core.billing import AdoptionEffect, BillingSummary

    previous, current, adopted = crafted()
    effect = AdoptionEffect("b", adopted.at, "repository", before_daily_usd=0.02, after_daily_usd=0.01)
    billing = BillingSummary("cur", "USD", [], 1.0, 1.0, 0.0, 0.05, None, [], [], adoptions=[effect])
    report = build_report(current, previous, [adopted], {7: 0.4}, {}, BASE, [], T0 + timedelta(days=7),
                          billing=billing)
    [saving] = report.realised
    assert saving.projected_usd == pytest.approx(0.3) and saving.billed_usd == pytest.approx(0.01 * 30)  # November
    text = report_text(report)
    assert "saved by policies adopted through the bot: estimated $0.30/month, billed $0.30/month" in text
    assert "b: $0.40/month → $0.10/month, saved: estimated $0.30/month, billed $0.30/month; projected $0.30/month" \
           in text
    [entry] = report_json(report)["realised_savings"]
    assert entry["billed_saved_usd"] == pytest.approx(0.3) and entry["projected_monthly_savings_usd"] == 0.3
    assert "billed *$0.30/month*" not in json.dumps(report_message(report))  # bold is the estimate only
    assert "estimated $0.30/month*, billed $0.30/month" in json.dumps(report_message(report))
    without_bill = build_report(current, previous, [adopted], {7: 0.4}, {}, BASE, [], T0)
    assert without_bill.realised[0].billed_usd is None and "billed" not in report_text(without_bill).split(
        "saved by policies")[1]
