"""Two `serve` processes on a per-minute schedule, then a restart: exactly one report per period."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC

import pytest

from bot.store import Store
from tests.helpers.aws import free_port, load, repository, run_cli
from tests.helpers.slack import ROOT
from tests.slack_standin import SlackStandIn

STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_serve_left_behind():
    """A test that fails midway leaves no `serve` process running (the stress loop found some)."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def start_serve(env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "w") as log:  # the child holds its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env={**env, "PORT": str(free_port())},
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    STARTED.append(process)
    return process


def posted_runs(db: str) -> list[dict]:
    store = Store(db)
    try:
        return list(store.db["report_runs"].rows_where("status = 'posted'", order_by="period"))
    finally:
        store.close()


def seed_a_report_posted_long_ago(db: str) -> None:
    """A database that has posted before: a start-up then catches up on a period with no report (a first start,
    on a database that never posted, does not)."""
    store = Store(db)
    try:
        with store.db.conn:
            store.db["report_runs"].insert({"period": "2020-01-06T09:00:00+00:00", "claimed_by": "old",
                                            "claimed_at": "2020-01-06T09:00:00+00:00", "status": "posted",
                                            "message_ts": "1578301200.000100"})
    finally:
        store.close()


def test_two_processes_and_a_restart_post_exactly_one_report_per_period(aws, capsys, settings, tmp_path):
    standin = SlackStandIn()
    try:
        load([repository()])
        assert run_cli(capsys, "scan")[0] == 0
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s3cret",
               "SLACK_API_URL": standin.api_url, "ECR_COST_SCHEDULE": "* * * * *",
               "ECR_COST_REPORT_CHANNEL": "C0REPORTS"}
        env.pop("SLACK_APP_TOKEN", None)
        seed_a_report_posted_long_ago(settings.db_path)  # so the start-up catches up on this period
        first, second = start_serve(env, tmp_path / "a.log"), start_serve(env, tmp_path / "b.log")
        deadline = time.monotonic() + 150
        while len(posted_runs(settings.db_path)) < 3:  # the start-up period, then at least one scheduled one
            assert time.monotonic() < deadline, (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
            time.sleep(1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, (tmp_path / "a.log").read_text()
        restarted = start_serve(env, tmp_path / "c.log")
        deadline = time.monotonic() + 60
        while "start-up: " not in (tmp_path / "c.log").read_text():  # its start-up has looked at this period
            assert time.monotonic() < deadline and restarted.poll() is None, (tmp_path / "c.log").read_text()
            time.sleep(0.2)
        for process, log in ((second, "b.log"), (restarted, "c.log")):
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, (tmp_path / log).read_text()
        runs = posted_runs(settings.db_path)[1:]  # after the seeded one
        reports = [a for m, a in standin.calls if m == "chat.postMessage" and a.get("channel") == "C0REPORTS"]
        assert len(reports) == len(runs) >= 2
        assert len({r["period"] for r in runs}) == len(runs)
        assert len({r["message_ts"] for r in runs}) == len(runs)
        claimed_by = {r["claimed_by"] for r in runs}
        assert claimed_by  # the claims name the process that won them
    finally:
        standin.stop()


def test_sigterm_lets_the_report_in_flight_finish_before_the_store_closes(aws, capsys, settings, tmp_path):
    """serve stopped while its start-up run is scanning: the run posts and records its report, then serve exits
    cleanly (it used to close the store under the run and exit without it)."""
    standin = SlackStandIn()
    try:
        load([repository()])
        assert run_cli(capsys, "scan")[0] == 0
        seed_a_report_posted_long_ago(settings.db_path)
        aws.hold["DescribeRepositories"] = held = threading.Event()
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s3cret",
               "SLACK_API_URL": standin.api_url, "ECR_COST_REPORT_CHANNEL": "C0REPORTS",
               "ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES": "0"}  # the run scans (not the scan just made)
        env.pop("SLACK_APP_TOKEN", None)
        log = tmp_path / "serve.log"
        process = start_serve(env, log)
        deadline = time.monotonic() + 60
        while not aws.calls["DescribeRepositories"] or "serving HTTP" not in log.read_text():  # the run is scanning
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        held.set()
        assert process.wait(timeout=60) == 0, log.read_text()
        output = log.read_text()
        assert "Traceback" not in output and "start-up: " in output, output
        [run] = posted_runs(settings.db_path)[1:]  # after the seeded one
        [report] = [a for m, a in standin.calls if m == "chat.postMessage" and a.get("channel") == "C0REPORTS"]
        assert "ECR cost report" in report["text"] and run["message_ts"]
    finally:
        standin.stop()


def test_report_cli_prints_and_posts_once(aws, capsys, monkeypatch):
    standin = SlackStandIn()
    try:
        load([repository()])
        code, out, _ = run_cli(capsys, "report", "--format", "json")
        doc = json.loads(out)
        assert code == 0 and doc["summary"]["repository_count"] == 1 and doc["top"][0]["repository"] == "shop"
        code, out, _ = run_cli(capsys, "report")
        assert code == 0 and "ECR cost report: week of" in out and " shop " in out
        code, _, err = run_cli(capsys, "report", "--post")
        assert code == 2 and "SLACK_BOT_TOKEN" in err
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-cli")
        monkeypatch.setenv("SLACK_API_URL", standin.api_url)
        monkeypatch.setenv("ECR_COST_REPORT_CHANNEL", "C0REPORTS")
        code, out, _ = run_cli(capsys, "report", "--post")
        assert code == 0 and "posted" in out
        code, out, _ = run_cli(capsys, "report", "--post")
        assert code == 1 and "already claimed" in out
        assert len([a for m, a in standin.calls if m == "chat.postMessage" and a["channel"] == "C0REPORTS"]) == 1
    finally:
        standin.stop()


def test_report_reuses_a_recent_complete_scan_and_rescans_an_old_or_partial_one(aws, capsys, monkeypatch):
    """Right after a scan, `report` builds on it (no ECR request); older than ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES,
    or partial, it scans again. The scheduled job decides the same way."""
    from datetime import datetime, timedelta

    from bot.config import load_settings
    from bot.wiring import build

    load([repository()])
    code, _, err = run_cli(capsys, "scan")
    assert code == 0 and "scanned 1 repositories" in err
    aws.calls.clear()
    code, out, err = run_cli(capsys, "report", "--format", "json")
    assert code == 0 and json.loads(out)["top"][0]["repository"] == "shop"
    assert "using the scan of" in err and "ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES=60" in err
    assert aws.calls["DescribeRepositories"] == 0 and aws.calls["DescribeImages"] == 0
    monkeypatch.setenv("ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES", "0")
    code, _, err = run_cli(capsys, "report")
    assert code == 0 and "scanned 1 repositories" in err and aws.calls["DescribeRepositories"] >= 1
    code, _, err = run_cli(capsys, "report", "--format", "json")
    assert "ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES: " not in err  # 0 is valid: always scan
    monkeypatch.delenv("ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES")

    def recent(clock=lambda: datetime.now(UTC)):
        built = build(load_settings(), clock=clock)
        try:
            return built.application.recent_scan(), built.store.latest_scan()
        finally:
            built.close()

    found, latest = recent()
    assert found.scan_id == latest.scan_id
    assert recent(lambda: latest.generated_at + timedelta(minutes=61))[0] is None  # too old: the job rescans
    monkeypatch.setenv("ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES", "90")
    assert recent(lambda: latest.generated_at + timedelta(minutes=61))[0] is not None
    aws.deny_regions.add("eu-west-1")
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    code, _, err = run_cli(capsys, "scan")
    found, latest = recent()
    assert latest.partial and found is None  # a partial scan is never reused
    code, _, err = run_cli(capsys, "report", "--format", "json")
    assert "scanned 1 repositories" in err


def test_a_bad_report_scan_max_age_is_one_line(aws, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES", "soon")
    code, _, err = run_cli(capsys, "report")
    assert code == 2 and err.strip().count("\n") == 0 and "ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES" in err


def test_report_never_reuses_a_scan_of_other_regions(aws, capsys, monkeypatch):
    """A scan made with ECR_COST_REGIONS=us-east-1 is not the estate of us-east-1,eu-west-1: the report rescans."""
    load([repository()])
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    assert run_cli(capsys, "scan")[0] == 0
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    code, _, err = run_cli(capsys, "report", "--format", "json")
    assert code == 0 and "using the scan of" not in err and "scanned 1 repositories" in err
    code, _, err = run_cli(capsys, "report", "--format", "json")  # the same scope now: reused
    assert code == 0 and "using the scan of" in err
