"""A new user's first day: clear one-line failures at start-up, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.errors import brief
from tests.conftest import free_port
from tests.slack_standin import SlackStandIn
from tests.test_policy_moto import repository
from tests.test_scan_moto import load, run_cli


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
