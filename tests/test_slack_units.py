"""Block Kit limits and escaping for any estate; the manifest against the app; Socket Mode wiring."""
from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.request import BoltRequest

from bot.config import load_settings
from bot.core.analysis import display_names, summarize
from bot.core.models import PolicyDecision, RepositoryView
from bot.render import blocks
from bot.slack import actions, commands, home
from bot.slack.server import build_runner
from bot.wiring import build, build_slack
from tests.helpers.rows import huge_estate
from tests.helpers.slack import check_limits
from tests.slack_standin import SlackStandIn, signed_headers

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def view_of(r, scan_rows, decision=None) -> RepositoryView:
    return RepositoryView(row=r, label=display_names(scan_rows)[r.arn], rank=1, rank_of=len(scan_rows),
                                 lifecycle_status="none", expiring_count=123, bytes_freed=10**12, savings_usd=99.5,
                                 change_usd=-3.2, last_decision=decision,
                                 adopted=decision is not None and decision.action == "adopted", scanned_at=NOW)


def test_ranking_detail_preview_and_home_hold_slacks_limits_for_10000_repositories():
    rows = huge_estate()
    check_limits(blocks.ranking(rows, display_names(rows), summarize(rows), NOW, partial=True, limit=10))
    check_limits(blocks.ranking(rows, display_names(rows), summarize(rows), NOW, partial=False, limit=10_000))
    adopted = PolicyDecision(1, rows[0].repository, "1", "r", rows[0].arn, "adopted", "U012AB3CD", "slack", NOW,
                             None, "{}", 1.0)
    for decision in (None, adopted):
        check_limits(blocks.repository_detail(view_of(rows[0], rows, decision)))
    expiring = [(f"sha256:{n:064x}", tuple(f"<tag-{k}>" for k in range(60)), NOW, 4) for n in range(5_000)]
    check_limits(blocks.preview_message(view_of(rows[0], rows), expiring))
    views = [view_of(r, rows) for r in rows[:500]]
    check_limits(blocks.home_view(views, summarize(rows), viewer_is_admin=False), blocks.MAX_HOME_BLOCKS)


@pytest.mark.parametrize("hostile", ["<!channel>", "<@U0ADMIN01>", "<https://evil.example|click>", "a & b", "*bold*"])
def test_user_text_is_escaped_everywhere(hostile):
    assert "<" not in blocks.escape(hostile) and ">" not in blocks.escape(hostile)
    message = blocks.not_found(hostile, [hostile])
    text = json.dumps(message)
    assert "<!channel>" not in text and "<@U0ADMIN01>" not in text and "<https://" not in text


def test_only_slack_user_ids_become_mentions():
    assert blocks.mention("U012AB3CD") == "<@U012AB3CD>"
    assert blocks.mention("Ubuntu") == "Ubuntu" and blocks.mention("root") == "root"


def test_clip_never_cuts_an_entity_in_half():
    clipped = blocks.clip("a" * 10 + "&amp;" * 10, 13)
    assert clipped.endswith("…") and "&am…" not in clipped and len(clipped) <= 13


# -- the manifest against what the app registers ---------------------------------------------------

SCOPES_OF_METHODS = {"users_lookupByEmail": {"users:read", "users:read.email"}, "chat_postMessage": {"chat:write"},
                     "views_publish": set(), "chat_postEphemeral": {"chat:write"},
                     "conversations_open": {"im:write"}, "files_upload_v2": {"files:write"},
                     "conversations_history": {"channels:history"}}


@pytest.fixture
def app_and_standin(tmp_path, monkeypatch):
    standin = SlackStandIn()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-unit")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "unit-secret")
    monkeypatch.setenv("SLACK_API_URL", standin.api_url)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "s.db"))
    settings = load_settings()
    built = build(settings, session_factory=lambda role: None)  # AWS is never called: the store is empty
    app, _, _ = build_slack(built)
    yield app, standin, settings
    built.close()
    standin.stop()


def dispatch(app, settings, body: str, content_type: str) -> int:
    headers = {k.lower(): [v] for k, v in signed_headers(settings.slack_signing_secret, body,
                                                           content_type=content_type).items()}
    return app.dispatch(BoltRequest(body=body, headers=headers)).status


def test_manifest_matches_the_listeners_and_the_scopes_the_code_uses(app_and_standin):
    app, standin, settings = app_and_standin
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    features, config = manifest["features"], manifest["settings"]

    assert [c["command"] for c in features["slash_commands"]] == [commands.COMMAND]
    assert all(c["usage_hint"] and c["description"] for c in features["slash_commands"])
    assert config["event_subscriptions"]["bot_events"] == list(home.EVENTS)
    assert features["app_home"]["home_tab_enabled"] is True
    assert config["interactivity"]["is_enabled"] is True
    assert config["socket_mode_enabled"] is True
    assert manifest["display_information"]["name"] and features["bot_user"]["display_name"]

    # every surface the manifest declares reaches a listener (an unhandled request would be a 404)
    from urllib.parse import urlencode
    for command in features["slash_commands"]:
        body = urlencode({"command": command["command"], "text": "help", "user_id": "U1", "team_id": "T1",
                          "response_url": standin.response_url(), "trigger_id": "t"})
        assert dispatch(app, settings, body, "application/x-www-form-urlencoded") == 200
    for event in config["event_subscriptions"]["bot_events"]:
        body = json.dumps({"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
                           "event": {"type": event, "user": "U1", "tab": "home"}})
        assert dispatch(app, settings, body, "application/json") == 200
    for action_id in blocks.ACTION_IDS:
        assert actions.ACTIONS.match(action_id)
        payload = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"},
                   "response_url": standin.response_url(), "container": {"type": "message"},
                   "actions": [{"action_id": action_id, "value": "arn:none", "action_ts": "1.0"}]}
        assert dispatch(app, settings, urlencode({"payload": json.dumps(payload)}),
                        "application/x-www-form-urlencoded") == 200

    used = set()
    for path in (ROOT / "bot").rglob("*.py"):
        for method in re.findall(r"client\.(\w+)\(", path.read_text()):
            if method in SCOPES_OF_METHODS:
                used |= SCOPES_OF_METHODS[method]
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == used | {"commands"}


def test_socket_mode_is_chosen_by_the_app_token_with_the_same_listeners(app_and_standin, monkeypatch):
    app, _, settings = app_and_standin
    from dataclasses import replace
    socket_settings = replace(settings, slack_app_token="xapp-1-unit")
    runner = build_runner(socket_settings, app)
    assert isinstance(runner, SocketModeHandler) and runner.app is app
    http_runner = build_runner(replace(settings, port=0), app)
    try:
        assert type(http_runner).__module__.startswith("waitress")
    finally:
        http_runner.close()


# -- owner emails -> Slack user IDs ----------------------------------------------------------------

class Lookups:
    """users.lookupByEmail as Slack answers it, counting the calls; ``directory`` maps emails to IDs."""

    def __init__(self, directory: dict[str, str]):
        self.directory, self.calls, self.errors = directory, 0, {}
        self._lock = threading.Lock()

    def users_lookupByEmail(self, email: str):
        from slack_sdk.errors import SlackApiError
        from slack_sdk.web import SlackResponse

        with self._lock:
            self.calls += 1
        error = self.errors.get(email) or (None if email in self.directory else "users_not_found")
        if error:
            raise SlackApiError(error, SlackResponse(client=None, http_verb="POST", api_url="", req_args={},
                                                     data={"ok": False, "error": error}, headers={},
                                                     status_code=200))
        return {"user": {"id": self.directory[email]}}


def test_a_new_hire_is_recognised_after_the_not_found_expires_without_a_restart():
    from bot.slack.directory import NOT_FOUND_TTL, SlackDirectory

    now = [1000.0]
    slack = Lookups({})
    directory = SlackDirectory(slack, admins=(), clock=lambda: now[0])
    assert directory.user_id_for("new@example.com") is None
    assert directory.user_id_for("new@example.com") is None and slack.calls == 1  # cached
    slack.directory["new@example.com"] = "U0NEWHIRE"  # joins the workspace
    now[0] += NOT_FOUND_TTL + 1
    assert directory.user_id_for("new@example.com") == "U0NEWHIRE" and slack.calls == 2
    assert directory.actor("U0NEWHIRE").may_change(("new@example.com",))
    assert not directory.actor("U0SOMEONE").may_change(("new@example.com",))


def test_lookup_errors_are_not_cached_and_the_cache_is_bounded():
    from bot.slack import directory as module

    slack = Lookups({})
    slack.errors["a@example.com"] = "ratelimited"
    directory = module.SlackDirectory(slack, admins=())
    assert directory.user_id_for("a@example.com") is None
    assert directory.user_id_for("a@example.com") is None and slack.calls == 2  # asked again
    for n in range(module.MAX_ENTRIES + 50):
        directory.user_id_for(f"user{n}@example.com")
    assert len(directory) == module.MAX_ENTRIES


def test_concurrent_lookups_are_safe():
    from bot.slack.directory import SlackDirectory

    slack = Lookups({f"u{n}@example.com": f"U0USER{n:03d}" for n in range(50)})
    directory = SlackDirectory(slack, admins=())
    errors = []

    def work():
        try:
            for n in range(50):
                assert directory.user_id_for(f"u{n}@example.com") == f"U0USER{n:03d}"
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and directory.owner_ids(("U0ADMIN", "u1@example.com", "gone@example.com")) == \
        ["U0ADMIN", "U0USER001"]
