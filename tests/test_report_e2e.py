"""Two `serve` processes on a per-minute schedule, then a restart: exactly one report per period."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bot.store import Store
from tests.helpers.aws import free_port, load, repository, run_cli
from tests.helpers.slack import ROOT
from tests.slack_standin import SlackStandIn


def start_serve(env: dict, log_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", "serve"], env={**env, "PORT": str(free_port())},
                            cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def posted_runs(db: str) -> list[dict]:
    store = Store(db)
    try:
        return list(store.db["report_runs"].rows_where("status = 'posted'", order_by="period"))
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
        store = Store(settings.db_path)  # a report posted long ago: the start-up catches up on this period
        with store.db.conn:
            store.db["report_runs"].insert({"period": "2020-01-06T09:00:00+00:00", "claimed_by": "old",
                                            "claimed_at": "2020-01-06T09:00:00+00:00", "status": "posted",
                                            "message_ts": "1578301200.000100"})
        store.close()
        first, second = start_serve(env, tmp_path / "a.log"), start_serve(env, tmp_path / "b.log")
        deadline = time.monotonic() + 150
        while len(posted_runs(settings.db_path)) < 3:  # the start-up period, then at least one scheduled one
            assert time.monotonic() < deadline, (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
            time.sleep(1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0, (tmp_path / "a.log").read_text()
        restarted = start_serve(env, tmp_path / "c.log")
        deadline = time.monotonic() + 60
        while "start-up: " not in (tmp_path / "c.log").read_text():  # its start-up has looked at this period
            assert time.monotonic() < deadline and restarted.poll() is None, (tmp_path / "c.log").read_text()
            time.sleep(0.2)
        for process, log in ((second, "b.log"), (restarted, "c.log")):
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, (tmp_path / log).read_text()
        runs = posted_runs(settings.db_path)[1:]  # after the seeded one
        reports = [a for m, a in standin.calls if m == "chat.postMessage" and a.get("channel") == "C0REPORTS"]
        assert len(reports) == len(runs) >= 2
        assert len({r["period"] for r in runs}) == len(runs)
        assert len({r["message_ts"] for r in runs}) == len(runs)
        claimed_by = {r["claimed_by"] for r in runs}
        assert claimed_by  # the claims name the process that won them
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
