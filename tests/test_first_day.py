"""A new user's first day: clear one-line failures at start-up, never a traceback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.errors import brief
from tests.helpers.aws import free_port, load, repository, run_cli
from tests.slack_standin import SlackStandIn


def serve_once(env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """`serve` as its own process, expected to stop by itself (a start-up failure)."""
    return subprocess.run([sys.executable, "-m", "bot", "serve"], env=env, capture_output=True, text=True,
                          timeout=timeout)


class HtmlPages(BaseHTTPRequestHandler):
    """A web server where an API was expected: every request gets a 404 HTML page."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = (b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
                + b"<p>" + b"x" * 5000 + b"</p></body></html>")
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def html_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HtmlPages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/"
    server.shutdown()


def test_brief_cuts_html_pages_and_long_bodies():
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "y" * 9000 + "</body></html>"
    assert brief(page) == "an HTML page instead of an API answer: 502 Bad Gateway"
    assert len(brief("z" * 5000)) == 200 and brief("first line\nsecond") == "first line"


@pytest.mark.parametrize("case", ["invalid_auth", "unreachable", "html"])
def test_serve_with_a_slack_that_refuses_or_cannot_be_reached_says_one_line_and_exits_2(aws, tmp_path, case,
                                                                                         html_server):
    standin = SlackStandIn()
    try:
        api_url = {"invalid_auth": standin.api_url, "unreachable": f"http://127.0.0.1:{free_port()}/api/",
                   "html": html_server}[case]
        if case == "invalid_auth":
            standin.fail_methods["auth.test"] = "invalid_auth"
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": api_url,
               "PORT": str(free_port())}
        done = serve_once(env)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
        expected = {"invalid_auth": "SLACK_BOT_TOKEN: Slack answered invalid_auth; check the token",
                    "unreachable": "SLACK_API_URL: cannot reach Slack at",
                    "html": "404"}[case]
        assert expected in lines[0]
        assert "<p>" not in lines[0] and len(lines[0]) < 400
    finally:
        standin.stop()


def test_report_post_with_a_rejected_token_says_one_line(aws, capsys, monkeypatch):
    standin = SlackStandIn()
    try:
        load([repository()])
        standin.fail_methods["auth.test"] = "invalid_auth"
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong")
        monkeypatch.setenv("SLACK_API_URL", standin.api_url)
        monkeypatch.setenv("ECR_COST_REPORT_CHANNEL", "C0REPORTS")
        code, out, err = run_cli(capsys, "report", "--post")
        assert code == 2 and "SLACK_BOT_TOKEN: Slack answered invalid_auth" in err and "Traceback" not in err
        assert not [m for m, _ in standin.calls if m == "chat.postMessage"]
    finally:
        standin.stop()


def health(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", "health"], env=env, capture_output=True, text=True,
                          timeout=30)


def wait_healthy(env: dict, process: subprocess.Popen, log_path, seconds: float = 30) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + seconds
    while (done := health(env)).returncode != 0:
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text() + done.stderr
        time.sleep(0.3)
    return done


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_health_follows_the_running_serve_in_both_modes(aws, capsys, tmp_path, mode):
    standin = SlackStandIn(socket_mode=mode == "socket")
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": standin.api_url,
           "ECR_COST_DB": str(tmp_path / "ecr-cost.db"), "PORT": str(free_port())}
    env.pop("ECR_COST_REPORT_CHANNEL", None)
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = "xapp-1-test"
    else:
        env["SLACK_SIGNING_SECRET"] = "s3cret"
    log_path = tmp_path / "serve.log"
    process = None
    try:
        load([repository()])
        assert health(env).returncode == 1 and "no heartbeat" in health(env).stderr  # nothing running yet
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        done = wait_healthy(env, process, log_path)
        assert f"{mode} mode" in done.stdout
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log_path.read_text()
        stopped = health(env)
        assert stopped.returncode == 1 and "no heartbeat" in stopped.stderr
        log = log_path.read_text()  # start-up says what the operator needs, without libraries' noise
        assert "will be unused" not in log and "botocore" not in log and "Traceback" not in log, log
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        standin.stop()


def test_a_stale_heartbeat_or_a_dropped_socket_is_unhealthy(tmp_path):
    from dataclasses import replace
    from datetime import datetime, timedelta

    from bot.config import load_settings
    from bot.health import check, write_alive

    settings = replace(load_settings({}), db_path=str(tmp_path / "x.db"))
    write_alive(settings, "socket", connected=True)
    assert check(settings)[0]
    later = datetime.now(UTC) + timedelta(minutes=5)
    healthy, why = check(settings, now=later)
    assert not healthy and "hung or stopped" in why
    write_alive(settings, "socket", connected=False)
    healthy, why = check(settings)
    assert not healthy and "connection is down" in why


def test_the_docker_image_has_every_extra_a_numeric_user_and_a_healthcheck():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    lines = [line.strip() for line in (root / "Dockerfile").read_text().splitlines()]
    install = next(line for line in lines if "pip install" in line)
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "'.[kube,cur]'" in install and {"kube", "cur"} <= set(extras)
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1].replace(":", "").isdigit() and not user.split()[1].startswith("0")
    assert any(line.startswith("HEALTHCHECK") and '"ecr-cost-bot", "health"' in line for line in lines)


def test_demo_keep_leaves_a_sample_registry_every_command_works_on(tmp_path):
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "ECR_COST_", "SLACK_"))}
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        demo = subprocess.Popen([sys.executable, "-m", "bot", "demo", "--keep", "--port", str(port), "--out",
                                 str(tmp_path / "out")], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C (or SIGTERM) stops it." not in log_path.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in log_path.read_text().splitlines()
                       if line.startswith("export "))
        assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        done = subprocess.run([sys.executable, "-m", "bot", "repo", "legacy/monolith", "--format", "json"],
                              env={**env, **exports}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert '"repository": "legacy/monolith"' in done.stdout
        done = subprocess.run([sys.executable, "-m", "bot", "scan", "--format", "json"], env={**env, **exports},
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and '"partial": false' in done.stdout, done.stderr
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
        assert not (tmp_path / "ecr-cost.db").exists()  # everything went to the demo's own database
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=10)


def test_demo_keep_on_a_taken_port_says_so(tmp_path, capsys):
    import socket

    from bot.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["demo", "--keep", "--port", str(taken.getsockname()[1]), "--out", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert code == 2 and "choose another with --port N" in out + err
    assert main(["demo", "--port", "5000"]) == 2 and "--port goes with --keep" in capsys.readouterr().err


def test_a_failed_command_leaves_no_database_but_never_one_in_use(tmp_path, capsys, monkeypatch):
    import fcntl

    from bot.cli import main

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens: unreadable
    db = tmp_path / "ecr-cost.db"
    monkeypatch.setenv("ECR_COST_DB", str(db))
    assert main(["repo", "shop"]) == 1 and "cannot read" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["policy", "validate", "-"]) == 1  # a command that needs no database creates none
    assert list(tmp_path.iterdir()) == []
    with open(db, "ab") as other:  # another process started on the same fresh database meanwhile
        fcntl.flock(other, fcntl.LOCK_SH)
        assert main(["repo", "shop"]) == 1
        assert db.exists()


def test_version():
    done = subprocess.run([sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("ecr-cost-bot ")


def test_scan_shows_its_progress_on_stderr_unless_quiet(aws, capsys, monkeypatch):
    import bot.progress

    monkeypatch.setattr(bot.progress, "LINE_EVERY", 0.0)  # a line at every step, not every 10 s
    load([repository()])
    code, _, err = run_cli(capsys, "scan")
    assert code == 0 and "scan: 1 of 1 accounts, 1 of 1 repositories read" in err
    code, _, err = run_cli(capsys, "scan", "--quiet")
    assert code == 0 and "accounts," not in err


def test_progress_is_a_bar_on_a_terminal_and_a_line_every_10_seconds_elsewhere():
    import io

    from bot.progress import Progress, StderrProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    bar = StderrProgress("scan", terminal)
    bar(Progress(1, 4, 50, 200, 3.0))
    bar.close()
    assert "50/200" in terminal.getvalue() and "1/4 accounts" in terminal.getvalue()

    now = [0.0]
    log = io.StringIO()
    lines = StderrProgress("scan", log, clock=lambda: now[0])
    for second in range(1, 31):  # a snapshot every second for 30 s: a line every 10 s
        now[0] = float(second)
        lines(Progress(second // 10, 4, second * 10, 400, float(second)))
    assert log.getvalue().count("\n") == 3
    assert "scan: 1 of 4 accounts, 100 of 400 repositories read, 10 s elapsed, about 30 s left" in log.getvalue()


def test_other_long_work_reports_steps_only_while_a_command_shows_them():
    import io
    import threading

    from bot.progress import StderrProgress, StepClock, showing

    now = [0.0]
    log = io.StringIO()
    sink = StderrProgress("in-use", log, clock=lambda: now[0])
    clock = StepClock("runtime reads", 40, clock=lambda: now[0])
    clock.step()  # nobody is showing: nothing drawn
    with showing(sink):
        def work():
            for _ in range(10):
                clock.step()

        now[0] = 20.0
        workers = [threading.Thread(target=work) for _ in range(3)]  # steps come from the workers' threads
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    now[0] = 40.0
    clock.step()  # the command is done showing: nothing drawn
    assert log.getvalue() == "in-use: 2 of 40 runtime reads, 20 s elapsed, about 6 min left\n"


def test_every_command_has_a_description_and_examples_and_one_format_vocabulary():
    import argparse

    from bot.cli import build_parser

    def leaves(parser, path=""):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            yield path, parser
            return
        for name, child in sub.choices.items():
            yield from leaves(child, f"{path} {name}".strip())

    commands = list(leaves(build_parser()))
    assert len(commands) >= 19
    for command, parser in commands:
        text = parser.format_help()
        assert parser.description and "examples:\n  ecr-cost-bot " + command.split()[0] in text, command
        formats = next((a.choices for a in parser._actions if "--format" in a.option_strings), None)
        if formats is not None:  # one vocabulary everywhere (`text`, the older name of table, still read)
            assert set(formats) == {"table", "json", "csv", "text"}, command


def test_repo_delete_without_a_name_is_a_usage_error_not_a_repository_called_delete(tmp_path, capsys, monkeypatch):
    from bot.cli import main

    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "x.db"))
    assert main(["repo", "delete"]) == 2
    assert "repo delete takes the repository's NAME" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def _views(count: int, status: str = "none"):
    from datetime import datetime

    from bot.core.analysis import display_names
    from bot.core.models import RepositoryView
    from tests.helpers.rows import huge_estate

    rows = huge_estate(count)
    labels = display_names(rows)
    return rows, [RepositoryView(row=r, label=labels[r.arn], rank=i + 1, rank_of=len(rows), lifecycle_status=status,
                                 expiring_count=None, bytes_freed=None, savings_usd=None, change_usd=None,
                                 last_decision=None, adopted=False, scanned_at=datetime.now(UTC))
                  for i, r in enumerate(rows)]


def test_app_home_pages_through_every_repository_within_slacks_limits():
    from bot.core.analysis import summarize
    from bot.render import blocks
    from tests.helpers.slack import check_limits

    rows, views = _views(200)
    seen, page, pages = [], 0, []
    while True:
        view = blocks.home_view(views, summarize(rows), False, page)
        check_limits(view, blocks.MAX_HOME_BLOCKS)
        ids = {e["action_id"]: e["value"] for b in view["blocks"] if b.get("block_id") == "home_pages"
               for e in b["elements"]}
        pages.append(ids)
        seen += [b["block_id"] for b in view["blocks"] if b.get("block_id", "").startswith("repo:")]
        if blocks.HOME_NEXT not in ids:
            break
        page = int(ids[blocks.HOME_NEXT])
    assert len(seen) == 200 == len(set(seen))  # every repository once, none left out
    assert blocks.HOME_PREVIOUS not in pages[0] and blocks.HOME_PREVIOUS in pages[-1] and len(pages) > 1
    assert "page 1 of" in json.dumps(blocks.home_view(views, summarize(rows), False, -5))  # out of range: clamped


def test_a_repository_already_on_the_base_policy_is_offered_no_adopt():
    from bot.render import blocks

    _, (view,) = _views(1, status="base")
    ids = [e["action_id"] for e in blocks.repository_actions(view)["elements"]]
    assert blocks.ADOPT not in ids and blocks.DECLINE not in ids and blocks.ADJUST in ids


def test_the_next_button_publishes_that_page_of_app_home(served, slack):
    from bot.render import blocks
    from tests.helpers.slack import OWNER, click

    status, _ = click(served, slack, blocks.HOME_NEXT, OWNER, value="1")
    assert status == 200
    _, args = slack.wait_for(lambda calls, _: next((c for c in calls if c[0] == "views.publish"), None))
    view = json.loads(args["view"]) if isinstance(args["view"], str) else args["view"]
    assert args["user_id"] == OWNER and view["type"] == "home" and "shop" in json.dumps(view)


def test_serve_with_an_app_token_slack_refuses_says_one_line_and_exits_2(aws, tmp_path):
    standin = SlackStandIn(socket_mode=True)
    try:
        standin.fail_methods["apps.connections.open"] = "invalid_auth"
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-ok", "SLACK_APP_TOKEN": "xapp-1-wrong",
               "SLACK_API_URL": standin.api_url, "ECR_COST_DB": str(tmp_path / "x.db")}
        done = serve_once(env)
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
        assert done.returncode == 2 and not errors, done.stderr
        assert "SLACK_APP_TOKEN: Slack answered invalid_auth" in done.stderr.strip().splitlines()[-1]
    finally:
        standin.stop()
