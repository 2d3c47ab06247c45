"""`ecr-cost-bot serve` in Socket Mode, end to end: the stand-in plays Slack (apps.connections.open, a local
websocket delivering envelopes and collecting acks, the Web API and response_urls), moto's server plays AWS."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.aws import CUSTOM, adopted_base, current_policy, load, repository, run_cli
from tests.helpers.slack import ADMIN, ARN, OWNER, ROOT, STRANGER, all_text
from tests.slack_standin import DEADLINE, SlackStandIn

APP_TOKEN = "xapp-1-test"


@pytest.fixture
def socket_slack():
    """The stand-in playing Slack in Socket Mode (its websocket too), one per test."""
    standin = SlackStandIn(socket_mode=True)
    yield standin
    standin.stop()


@pytest.fixture
def socket_served(aws, socket_slack, capsys, tmp_path):
    """The crafted repository in moto, one scan stored, then `serve` in Socket Mode as its own process,
    connected to the stand-in's websocket. Yields (process, log path); stopping it is the test's business."""
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    env = {**os.environ, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_BOT_TOKEN": "xoxb-test-token",
           "SLACK_API_URL": socket_slack.api_url, "ECR_COST_ADMINS": ADMIN,
           "ECR_COST_DB": str(tmp_path / "ecr-cost.db")}
    for name in ("SLACK_SIGNING_SECRET", "ECR_COST_REPORT_CHANNEL", "PORT", "HTTP_PROXY", "HTTPS_PROXY",
                 "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while socket_slack.socket.connection_count == 0:  # poll: the connection, or the process dying, or the deadline
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not connect (exit code {process.poll()}):\n{log_path.read_text()}")
            with contextlib.suppress(TimeoutError):
                socket_slack.socket.wait_for(lambda: socket_slack.socket.connections, timeout=0.2)
        yield process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def response_to(socket_slack: SlackStandIn, response_url: str, count: int = 1,
                timeout: float = DEADLINE) -> list[dict]:
    response_id = response_url.rsplit("/", 1)[1]
    return socket_slack.wait_for(lambda calls, responses: (found := [r for i, r in responses if i == response_id])
                                 and len(found) >= count and found, timeout)


def test_socket_mode_serve_end_to_end(socket_served, socket_slack):
    process, log_path = socket_served
    socket = socket_slack.socket
    envelopes: list[str] = []

    def deliver(type_: str, payload: dict) -> str:
        envelope_id, ack = socket.deliver(type_, payload, timeout=3.0)  # Slack's 3 seconds
        assert ack["envelope_id"] == envelope_id
        envelopes.append(envelope_id)
        return envelope_id

    # the app opened its connection with the app-level token, at the URL apps.connections.open handed out
    assert [a for m, a in socket_slack.authorizations if m == "apps.connections.open"] == [f"Bearer {APP_TOKEN}"]
    assert socket.paths == ["/link/?ticket=1"]
    first = socket.current()

    # a. /ecr-cost shop: acked with its envelope_id, the detail at response_url
    response_url = socket_slack.response_url()
    deliver("slash_commands", socket.slash_command("/ecr-cost", "shop", OWNER, response_url))
    [detail] = response_to(socket_slack, response_url)
    assert detail["response_type"] == "ephemeral" and "shop" in all_text(detail)
    assert "adopt_base_policy" in all_text(detail)

    # b. a stranger's Adopt: acked, refused in an ephemeral answer, the policy in AWS untouched
    response_url = socket_slack.response_url()
    deliver("interactive", socket.block_action("adopt_base_policy", ARN, STRANGER, response_url))
    [refusal] = response_to(socket_slack, response_url)
    assert refusal["response_type"] == "ephemeral"
    assert "Only the owners" in all_text(refusal) and f"<@{OWNER}>" in all_text(refusal)
    assert current_policy() == CUSTOM

    # c. the owner's Adopt: acked, the base policy in AWS
    response_url = socket_slack.response_url()
    deliver("interactive", socket.block_action("adopt_base_policy", ARN, OWNER, response_url))
    [adopted] = response_to(socket_slack, response_url)
    assert f"Base policy adopted by <@{OWNER}>" in all_text(adopted)
    assert json.loads(current_policy()) == adopted_base()  # the base policy, keeping whatever runs

    # d. app_home_opened: acked, the home tab published for that user
    deliver("events_api", socket.event_callback({"type": "app_home_opened", "user": OWNER, "channel": "D0DMCHANNEL",
                                                 "tab": "home", "event_ts": f"{time.time():.6f}"}))
    _, args = socket_slack.wait_for(lambda calls, _: next((c for c in calls if c[0] == "views.publish"), None))
    view = json.loads(args["view"]) if isinstance(args["view"], str) else args["view"]
    assert args["user_id"] == OWNER and view["type"] == "home"
    assert {a for m, a in socket_slack.authorizations if m != "apps.connections.open"} == {"Bearer xoxb-test-token"}

    # e. Slack's refresh: a new apps.connections.open, a second connection; the next command goes there
    second = socket.refresh()
    assert second != first and socket.connection_count == 2
    assert [a for m, a in socket_slack.authorizations if m == "apps.connections.open"] == [f"Bearer {APP_TOKEN}"] * 2
    assert socket.paths == ["/link/?ticket=1", "/link/?ticket=2"]
    socket.wait_for(lambda: first not in socket.open, timeout=5)  # the old connection is gone
    response_url = socket_slack.response_url()
    envelope_id = deliver("slash_commands", socket.slash_command("/ecr-cost", "shop", OWNER, response_url))
    assert (second, envelope_id) in [(i, m.get("envelope_id")) for i, m in socket.received]  # acked there
    [detail] = response_to(socket_slack, response_url)
    assert detail["blocks"][0]["text"]["text"] == "shop" and f"Base policy adopted by <@{OWNER}>" in all_text(detail)

    # every envelope acknowledged, exactly once, with its envelope_id
    assert sorted(a["envelope_id"] for a in socket.acks) == sorted(envelopes)
    assert socket.connection_count == 2

    # f. SIGTERM: a clean exit, no traceback
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    output = log_path.read_text()
    assert code == 0, f"exit code {code}\n{output}"
    assert "Traceback" not in output, output
