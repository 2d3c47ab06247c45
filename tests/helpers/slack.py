"""Slack as the tests play it: the identities, signed slash commands and clicks over HTTP, `serve` as its own
process pointed at the stand-in, what the stand-in received, and Slack's Block Kit limits."""
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

from bot.render import blocks
from bot.store import Store
from tests.helpers.aws import ACCOUNT, free_port
from tests.slack_standin import SlackStandIn, signed_headers

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
OWNER, STRANGER, ADMIN, ALICE = "U0SHOP123", "U0NOTOWNR", "U0ADMIN01", "U0ALICE01"
ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop"
ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"section": 3000, "header": 150, "button": 75, "value": 2000, "action_id": 255, "block_id": 255}


@contextmanager
def serving(slack: SlackStandIn, tmp_path: Path, **env_overrides: str):
    """`serve` in HTTP mode as its own process, pointed at the stand-in; yields its base URL. On exit: SIGTERM,
    and the process must have stopped cleanly without a traceback."""
    port = free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SECRET,
           "SLACK_API_URL": slack.api_url, "PORT": str(port), "ECR_COST_ADMINS": ADMIN, **env_overrides}
    env.pop("SLACK_APP_TOKEN", None)
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 (read back once the process has ended)
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
          retry: int | None = None, container: dict | None = None, response_id: str | None = None) -> tuple[int, str]:
    """A signed block_actions request; (HTTP status, the id of its response_url). ``response_id`` reuses the
    response_url of an earlier click (Slack's redelivery of that very payload)."""
    response_url = f"{slack.base}/response/{response_id}" if response_id else slack.response_url()
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


def check_limits(message: dict, max_blocks: int = blocks.MAX_BLOCKS) -> None:
    assert len(message["blocks"]) <= max_blocks
    assert message.get("type") == "home" or message["text"]  # a fallback for notifications
    block_ids = [b["block_id"] for b in message["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= LIMITS["section"]
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= LIMITS["header"]
        if block["type"] == "context":
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
        if "block_id" in block:
            assert len(block["block_id"]) <= LIMITS["block_id"]
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["text"]["text"]) <= LIMITS["button"]
                assert len(element["value"]) <= LIMITS["value"]
                assert len(element["action_id"]) <= LIMITS["action_id"]
                if "confirm" in element:
                    confirm = element["confirm"]
                    assert len(confirm["title"]["text"]) <= 100 and len(confirm["text"]["text"]) <= 300

