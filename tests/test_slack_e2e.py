"""`ecr-cost-bot serve` in HTTP mode, end to end: signed requests over real HTTP, moto's server for AWS,
a local stand-in for the Slack Web API and response_urls."""
from __future__ import annotations

import contextlib
import json
import time
from urllib.parse import urlencode

import pytest

from bot.store import Store
from tests.helpers.aws import CUSTOM, adopted_base, current_policy
from tests.helpers.slack import (
    ADMIN,
    ALICE,
    ARN,
    OWNER,
    SECRET,
    STRANGER,
    all_text,
    click,
    decisions,
    post,
    responses_to,
    slash,
)
from tests.slack_standin import signed_headers


def test_a_signed_slash_command_is_acknowledged_at_once_and_the_detail_follows(served, slack):
    status, elapsed, response_id = slash(served, slack, "shop")
    assert status == 200  # acknowledged at once; the latency is measured in bench/slack_bench.py
    [message] = responses_to(slack, response_id)
    assert message["response_type"] == "ephemeral"
    assert message["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "shop", "emoji": True}}
    text = all_text(message)
    assert "rank *#1* of 1" in text and f"<@{OWNER}>" in text and "custom (1 rule)" in text
    assert "adopting it (in-use images kept) expires 19 of 30 images" in text
    action_ids = [e["action_id"] for e in message["blocks"][-1]["elements"]]
    assert action_ids == ["adopt_base_policy", "adjust_policy", "preview_policy", "snooze", "decline", "set_limit"]
    assert all(e["value"] == ARN for e in message["blocks"][-1]["elements"])


@pytest.fixture
def stale_snapshots(monkeypatch):
    monkeypatch.setenv("ECR_COST_SNAPSHOT_MAX_AGE_HOURS", "0")  # every scan is too old: details re-read AWS


def test_a_stale_snapshot_is_answered_from_one_fresh_read(stale_snapshots, served, slack, aws):
    aws.calls.clear()
    _, _, response_id = slash(served, slack, "shop")
    [message] = responses_to(slack, response_id)
    assert "expires 19 of 30 images" in all_text(message) and "rank *#1* of 1" in all_text(message)
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
    assert [e["action_id"] for e in replaced["blocks"][-1]["elements"]] == ["rollback", "preview_policy", "set_limit"]
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


NOTHING_CHANGED = ("shop already has these rules; nothing was changed",
                   "another change to shop is in progress; nothing was changed")


def test_the_same_click_twice_and_a_slack_retry_act_once(served, slack, settings):
    first = click(served, slack, "adopt_base_policy", OWNER, action_ts="1700000000.000100")
    # Slack's redelivery of the first click: the identical payload (its response_url too), marked as a retry
    again = click(served, slack, "adopt_base_policy", OWNER, action_ts="1700000000.000100", retry=1,
                  response_id=first[1])
    double = click(served, slack, "adopt_base_policy", OWNER, action_ts="1700000000.900100")
    assert first[0] == again[0] == double[0] == 200

    # Whichever of the two distinct clicks runs first adopts: its message replaced, no note. The other finds the
    # change still in progress (a note only) or the rules already in force (the message replaced with the
    # repository as it now is, and a note): nothing changed, and it says why. Whichever delivery of the first
    # click runs first is its only one: the redelivery adds no answer.
    def answers(responses) -> dict[str, list[dict]]:
        return {c: [r for i, r in responses if i == c] for c in (first[1], double[1])}

    def noted(found: list[dict]) -> bool:
        return any(r.get("response_type") == "ephemeral" and any(n in all_text(r) for n in NOTHING_CHANGED)
                   for r in found)

    settled = slack.wait_for(lambda calls, responses: (found := answers(responses)) and sorted(
        map(noted, found.values())) == [False, True] and all(found.values()) and list(responses))
    with pytest.raises(TimeoutError):  # a bounded look for a late answer more: to the redelivery, or a second one
        slack.wait_for(lambda calls, responses: len(responses) > len(settled), timeout=1.0)
    found = answers(slack.responses)
    [adopting] = [c for c, rs in found.items() if not noted(rs)]
    [other] = [c for c in found if c != adopting]
    [adoption] = found[adopting]
    assert adoption.get("replace_original") and f"Base policy adopted by <@{OWNER}>" in all_text(adoption), \
        slack.described_responses()
    *replaced, note = found[other]
    if NOTHING_CHANGED[0] in all_text(note):  # it ran after the adoption: the message shows it, and the note
        [detail] = replaced
        assert detail.get("replace_original") and f"Base policy adopted by <@{OWNER}>" in all_text(detail), \
            slack.described_responses()
    else:
        assert NOTHING_CHANGED[1] in all_text(note) and replaced == [], slack.described_responses()
    assert [d.action for d in decisions(settings.db_path)] == ["adopted"]
    assert json.loads(current_policy()) == adopted_base()
    store = Store(settings.db_path)
    assert store.backup_count(ARN) == 1
    store.close()


def test_preview_button_lists_what_would_expire_for_anyone(served, slack):
    _, response_id = click(served, slack, "preview_policy", STRANGER)
    [message] = responses_to(slack, response_id)
    text = all_text(message)
    assert message["response_type"] == "ephemeral"
    assert "Adopting the base policy on *shop* expires 19 of 30 images" in text
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
        with contextlib.suppress(OSError):  # the server may answer and close before the whole body is sent
            sock.sendall(body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"413", answer[:200]
    assert slack.responses == [] and current_policy() == CUSTOM and decisions(settings.db_path) == []
