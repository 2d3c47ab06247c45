"""`ecr-cost-bot serve` in HTTP mode, end to end: signed requests over real HTTP, moto's server for AWS,
a local stand-in for the Slack Web API and response_urls."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.store import Store
from tests.conftest import ACCOUNT, free_port
from tests.slack_standin import SlackStandIn, signed_headers
from tests.test_policy_moto import CUSTOM, adopted_base, current_policy, repository
from tests.test_scan_moto import load, run_cli

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
OWNER, STRANGER, ADMIN, ALICE = "U0SHOP123", "U0NOTOWNR", "U0ADMIN01", "U0ALICE01"
ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def slack():
    standin = SlackStandIn(emails={"alice@example.com": ALICE})
    yield standin
    standin.stop()


@pytest.fixture
def served(aws, slack, capsys, monkeypatch, tmp_path):
    """The crafted repository in moto, one scan stored, then `serve` as its own process."""
    slack.reset()
    repo = repository(policy=CUSTOM)
    repo.tags["owner"] = f"{OWNER} alice@example.com"
    load([repo])
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    with serving(slack, tmp_path) as base:
        yield base


@contextmanager
def serving(slack: SlackStandIn, tmp_path: Path, **env_overrides: str):
    """`serve` in HTTP mode as its own process, pointed at the stand-in; yields its base URL. On exit: SIGTERM,
    and the process must have stopped cleanly without a traceback."""
    port = free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SECRET,
           "SLACK_API_URL": slack.api_url, "PORT": str(port), "ECR_COST_ADMINS": ADMIN, **env_overrides}
    env.pop("SLACK_APP_TOKEN", None)
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                assert json.load(response) == {"ok": True}
                break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"serve did not start:\n{log.read()}")
            time.sleep(0.1)
    try:
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        log.seek(0)
        output = log.read()
    assert code == 0, output  # a clean shutdown on SIGTERM
    assert "Traceback" not in output, output


def post(base: str, body: str, headers: dict) -> tuple[int, float]:
    request = urllib.request.Request(f"{base}/slack/events", data=body.encode(), headers=headers, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, time.perf_counter() - started
    except urllib.error.HTTPError as error:
        return error.code, time.perf_counter() - started


def slash(base: str, slack: SlackStandIn, text: str, user: str = OWNER, **header_overrides) -> tuple[int, float, str]:
    response_url = slack.response_url()
    body = urlencode({"token": "legacy", "team_id": "T0EXAMPLE", "team_domain": "example", "channel_id": "C0CHAN001",
                      "channel_name": "finops", "user_id": user, "user_name": "someone", "command": "/ecr-cost",
                      "text": text, "api_app_id": "A0ECRCOST", "response_url": response_url,
                      "trigger_id": "13345224609.738474920.8088930838d88f008e0"})
    headers = signed_headers(SECRET, body) | header_overrides
    status, elapsed = post(base, body, headers)
    return status, elapsed, response_url.rsplit("/", 1)[1]


def click(base: str, slack: SlackStandIn, action_id: str, user: str, action_ts: str = None, value: str = ARN,
          retry: int | None = None, container: dict | None = None) -> tuple[int, str]:
    response_url = slack.response_url()
    payload = {"type": "block_actions", "user": {"id": user, "username": "x", "team_id": "T0EXAMPLE"},
               "api_app_id": "A0ECRCOST", "team": {"id": "T0EXAMPLE", "domain": "example"},
               "container": container or {"type": "message", "is_ephemeral": True, "channel_id": "C0CHAN001"},
               "trigger_id": "1.2.3", "response_url": response_url,
               "actions": [{"type": "button", "action_id": action_id, "block_id": f"repo:{value}"[:255],
                            "value": value, "action_ts": action_ts or f"{time.time():.6f}"}]}
    body = urlencode({"payload": json.dumps(payload)})
    headers = signed_headers(SECRET, body)
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    status, _ = post(base, body, headers)
    return status, response_url.rsplit("/", 1)[1]


def responses_to(slack: SlackStandIn, response_id: str, count: int = 1) -> list[dict]:
    return slack.wait_for(lambda calls, responses: (found := [r for i, r in responses if i == response_id])
                          and len(found) >= count and found)


def all_text(message: dict) -> str:
    return json.dumps(message)


def decisions(settings_db: str):
    store = Store(settings_db)
    try:
        return store.decisions()
    finally:
        store.close()


def test_a_signed_slash_command_is_acknowledged_at_once_and_the_detail_follows(served, slack):
    status, elapsed, response_id = slash(served, slack, "shop")
    assert status == 200  # acknowledged at once; the latency is measured in bench/slack_bench.py
    [message] = responses_to(slack, response_id)
    assert message["response_type"] == "ephemeral"
    assert message["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "shop", "emoji": True}}
    text = all_text(message)
    assert "rank *#1* of 1" in text and f"<@{OWNER}>" in text and "custom (1 rule)" in text
    assert "would expire 19 images" in text
    action_ids = [e["action_id"] for e in message["blocks"][-1]["elements"]]
    assert action_ids == ["adopt_base_policy", "adjust_policy", "preview_policy", "snooze", "decline"]
    assert all(e["value"] == ARN for e in message["blocks"][-1]["elements"])


@pytest.fixture
def stale_snapshots(monkeypatch):
    monkeypatch.setenv("ECR_COST_SNAPSHOT_MAX_AGE_HOURS", "0")  # every scan is too old: details re-read AWS


def test_a_stale_snapshot_is_answered_from_one_fresh_read(stale_snapshots, served, slack, aws):
    aws.calls.clear()
    _, _, response_id = slash(served, slack, "shop")
    [message] = responses_to(slack, response_id)
    assert "would expire 19 images" in all_text(message) and "rank *#1* of 1" in all_text(message)
    assert aws.calls["DescribeImages"] == 1 and aws.calls["GetLifecyclePolicy"] == 1  # one read, not two


def test_ranking_and_help_and_unknown(served, slack):
    _, _, ranking = slash(served, slack, "")
    _, _, helped = slash(served, slack, "help")
    _, _, unknown = slash(served, slack, "shpo")
    assert "top 1 of 1 repositories" in all_text(responses_to(slack, ranking)[0])
    assert "/ecr-cost NAME" in all_text(responses_to(slack, helped)[0])
    assert "No repository named `shpo`. Did you mean: `shop`?" in all_text(responses_to(slack, unknown)[0])


@pytest.mark.parametrize("headers", [
    {"X-Slack-Signature": "v0=" + "0" * 64},
    {"X-Slack-Request-Timestamp": str(int(time.time()) - 6 * 60)},
])
def test_forged_or_stale_requests_are_rejected_and_change_nothing(served, slack, settings, headers):
    status, _, response_id = slash(served, slack, "shop", **headers)
    assert status == 401
    body = urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": OWNER}, "actions": [
        {"action_id": "adopt_base_policy", "value": ARN, "action_ts": "1.0"}], "response_url": slack.response_url()})})
    assert post(served, body, signed_headers(SECRET, body) | headers)[0] == 401
    time.sleep(0.5)
    assert slack.responses == [] and current_policy() == CUSTOM and decisions(settings.db_path) == []


def test_a_non_owners_click_is_refused_and_changes_nothing(served, slack, settings):
    status, response_id = click(served, slack, "adopt_base_policy", STRANGER)
    assert status == 200
    [message] = responses_to(slack, response_id)
    assert message["response_type"] == "ephemeral"
    assert f"Only the owners (<@{OWNER}>, alice@example.com) or an admin" in all_text(message)
    assert current_policy() == CUSTOM and decisions(settings.db_path) == []
    # the button's value is not trusted: pointing it elsewhere changes nothing either
    status, response_id = click(served, slack, "adopt_base_policy", STRANGER, value="arn:aws:ecr:x:1:repository/y")
    assert "no longer in the latest scan" in all_text(responses_to(slack, response_id)[0])


def test_the_owners_click_adopts_backs_up_records_and_rolls_back_exactly(served, slack, settings):
    status, response_id = click(served, slack, "adopt_base_policy", OWNER)
    assert status == 200
    [replaced] = responses_to(slack, response_id)
    assert replaced["replace_original"] is True
    assert f"Base policy adopted by <@{OWNER}>" in all_text(replaced)
    assert [e["action_id"] for e in replaced["blocks"][-1]["elements"]] == ["rollback", "preview_policy"]
    assert json.loads(current_policy()) == adopted_base()
    [adopted] = decisions(settings.db_path)
    assert (adopted.action, adopted.user_id, adopted.source, adopted.policy_before) == \
        ("adopted", OWNER, "slack", CUSTOM)
    store = Store(settings.db_path)
    assert store.backup(adopted.backup_id) == (True, CUSTOM)
    store.close()

    status, response_id = click(served, slack, "rollback", OWNER)
    [replaced] = responses_to(slack, response_id)
    assert current_policy() == CUSTOM  # byte for byte
    assert f"Rolled back by <@{OWNER}>" in all_text(replaced)
    assert [d.action for d in decisions(settings.db_path)] == ["adopted", "rolled_back"]


def test_a_snooze_after_an_adoption_does_not_block_the_rollback(served, slack, settings):
    responses_to(slack, click(served, slack, "adopt_base_policy", OWNER)[1])
    responses_to(slack, click(served, slack, "snooze", OWNER)[1])  # from an older message
    [replaced] = responses_to(slack, click(served, slack, "rollback", OWNER)[1])
    assert current_policy() == CUSTOM and "Rolled back" in all_text(replaced)
    assert [d.action for d in decisions(settings.db_path)] == ["adopted", "snoozed", "rolled_back"]


def test_an_owner_named_by_email_and_an_admin_may_act(served, slack, settings):
    _, response_id = click(served, slack, "snooze", ALICE)
    responses_to(slack, response_id)
    assert ("users.lookupByEmail", {"email": "alice@example.com"}) in [(m, {k: v for k, v in a.items() if k == "email"})
                                                                        for m, a in slack.calls]
    _, response_id = click(served, slack, "adopt_base_policy", ADMIN)
    responses_to(slack, response_id)
    assert [(d.action, d.user_id) for d in decisions(settings.db_path)] == [("snoozed", ALICE), ("adopted", ADMIN)]


def test_the_same_click_twice_and_a_slack_retry_act_once(served, slack, settings):
    first = click(served, slack, "adopt_base_policy", OWNER, action_ts="1700000000.000100")
    again = click(served, slack, "adopt_base_policy", OWNER, action_ts="1700000000.000100", retry=1)
    double = click(served, slack, "adopt_base_policy", OWNER, action_ts="1700000000.900100")
    assert first[0] == again[0] == double[0] == 200
    # whichever of the two distinct clicks runs first adopts (the message replaced); the other one finds
    # the rules already in force, or the change still in progress: a note, nothing changed; the redelivery
    # is ignored
    def both_answered(calls, responses):
        notes = [r for i, r in responses if "already has these rules" in all_text(r) or "in progress" in all_text(r)]
        return {i for i, _ in responses} == {first[1], double[1]} and notes
    assert len(slack.wait_for(both_answered)) == 1
    time.sleep(0.5)  # a bounded look for a late answer to the redelivery
    assert again[1] not in {i for i, _ in slack.responses}
    assert [d.action for d in decisions(settings.db_path)] == ["adopted"]
    store = Store(settings.db_path)
    assert store.backup_count(ARN) == 1
    store.close()


def test_preview_button_lists_what_would_expire_for_anyone(served, slack):
    _, response_id = click(served, slack, "preview_policy", STRANGER)
    [message] = responses_to(slack, response_id)
    text = all_text(message)
    assert message["response_type"] == "ephemeral" and "would expire *19* of 30 images" in text
    assert "latest-old" in text and current_policy() == CUSTOM


@pytest.mark.parametrize("text, expected", [
    ("x" * 10_000, "10,000 characters"),
    ("<!channel> *bold* <@U0ADMIN01>", "&lt;!channel&gt; *bold* &lt;@U0ADMIN01&gt;"),
    ("résumé-ñ 🚀", "No repository named `résumé-ñ 🚀`"),
])
def test_hostile_slash_text_gets_a_clear_reply(served, slack, text, expected):
    status, _, response_id = slash(served, slack, text)
    assert status == 200
    [message] = responses_to(slack, response_id)
    rendered = all_text(message)
    assert json.dumps(expected)[1:-1] in rendered
    assert "<!channel>" not in rendered and "<@U0ADMIN01>" not in rendered


def test_app_home_shows_the_viewers_repositories(served, slack):
    body = json.dumps({"token": "legacy", "team_id": "T0EXAMPLE", "api_app_id": "A0ECRCOST", "type": "event_callback",
                       "event_id": "Ev0HOME01", "event_time": int(time.time()),
                       "event": {"type": "app_home_opened", "user": OWNER, "channel": "D0DMCHANNEL", "tab": "home",
                                 "event_ts": f"{time.time():.6f}"}})
    status, _ = post(served, body, signed_headers(SECRET, body, content_type="application/json"))
    assert status == 200
    method, args = slack.wait_for(lambda calls, _: next((c for c in calls if c[0] == "views.publish"), None))
    view = json.loads(args["view"]) if isinstance(args["view"], str) else args["view"]
    assert args["user_id"] == OWNER and view["type"] == "home"
    assert "*shop*" in json.dumps(view) and "adopt_base_policy" in json.dumps(view)


def test_an_oversized_unsigned_request_gets_413_and_changes_nothing(served, slack, settings):
    """waitress would read a 1 GB body before Bolt checks the signature: it stops at 1 MiB, answers 413."""
    import socket

    payload = json.dumps({"type": "block_actions", "user": {"id": OWNER}, "actions": [
        {"action_id": "adopt_base_policy", "value": ARN, "action_ts": "1.0"}], "response_url": slack.response_url()})
    body = urlencode({"payload": payload, "padding": "x" * (2 * 2**20)}).encode()
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded"
                     f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        try:
            sock.sendall(body)
        except OSError:
            pass  # the server may answer and close before the whole body is sent
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"413", answer[:200]
    assert slack.responses == [] and current_policy() == CUSTOM and decisions(settings.db_path) == []
