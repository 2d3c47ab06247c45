"""Set a limit… in Slack, end to end over signed HTTP against `serve`: the button in `/ecr-cost NAME`, the modal, the
limit as the repository's ecr-cost-limit-usd tag, recorded, undone; strangers refused; the admins' App Home button."""
from __future__ import annotations

import json

from bot.render import blocks
from bot.render import watch as render
from tests.helpers.aws import load, run_cli
from tests.helpers.decisions import SHOP, decisions_estate, interact, opened_view, submission, tags_of
from tests.helpers.slack import ADMIN, OWNER, STRANGER, click, decisions, responses_to


def limit_state(value: str | None) -> dict:
    return {"limit": {"limit": {"type": "plain_text_input", "value": value}}}


def direct_messages(slack, user: str, containing: str) -> list[dict]:
    return slack.wait_for(lambda calls, _: [a for m, a in calls if m == "chat.postMessage" and a.get("channel") == user
                                            and containing in json.dumps(a)])


def test_an_owner_sets_a_limit_in_slack_and_undoes_it(served, slack, settings, capsys):
    code, out, _ = run_cli(capsys, "repo", "shop")
    assert "limit " not in out
    click(served, slack, render.SET_LIMIT, STRANGER, value=SHOP)  # the form opens for anyone...
    view = opened_view(slack, render.LIMIT_VIEW)
    assert view["private_metadata"] == SHOP and view["callback_id"] == render.LIMIT_VIEW
    for bad in ("five", "-1", "0", "1e12"):
        status, answer = interact(served, submission(view, limit_state(bad), OWNER))
        assert status == 200 and answer["response_action"] == "errors" and list(answer["errors"]) == ["limit"]
    assert decisions(settings.db_path) == [] and "ecr-cost-limit-usd" not in tags_of("shop")

    interact(served, submission(view, limit_state("7.5"), STRANGER))  # ...the owner check is at the submission
    direct_messages(slack, STRANGER, "Only the owners")
    assert "ecr-cost-limit-usd" not in tags_of("shop")

    slack.reset()
    click(served, slack, render.SET_LIMIT, OWNER, value=SHOP)
    view = opened_view(slack, render.LIMIT_VIEW)
    interact(served, submission(view, limit_state("$7.50"), OWNER))
    [message] = direct_messages(slack, OWNER, "now has a limit of")
    assert "$7.50/month" in json.dumps(message) and render.UNDO_LIMIT in json.dumps(message)
    assert tags_of("shop")["ecr-cost-limit-usd"] == "7.50"
    [decision] = decisions(settings.db_path)
    assert (decision.action, decision.user_id, decision.tag_before, decision.tag_after) == (
        "limit_set", OWNER, None, "7.50")
    code, out, _ = run_cli(capsys, "decisions", "--format", "json")
    assert json.loads(out)[0]["note"] == "ecr-cost-limit-usd=7.50"

    _, response_id = click(served, slack, render.UNDO_LIMIT, STRANGER, value=SHOP)
    assert "Only the owners" in json.dumps(responses_to(slack, response_id))
    assert tags_of("shop")["ecr-cost-limit-usd"] == "7.50"
    _, response_id = click(served, slack, render.UNDO_LIMIT, OWNER, value=SHOP)
    assert "Undone" in json.dumps(responses_to(slack, response_id))
    assert "ecr-cost-limit-usd" not in tags_of("shop")
    assert [d.action for d in decisions(settings.db_path)] == ["limit_set", "limit_undone"]


def test_the_detail_offers_set_a_limit_and_admins_home_offers_the_templates(aws, slack, capsys, monkeypatch):
    from bot.config import load_settings
    from bot.slack.home import home_view
    from bot.wiring import build, build_slack

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-home")
    monkeypatch.setenv("SLACK_API_URL", slack.api_url)
    monkeypatch.setenv("ECR_COST_ADMINS", ADMIN)
    load(decisions_estate())
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    built = build(load_settings())
    try:
        _, directory, _ = build_slack(built)
        view = built.application.detail("shop", refresh_if_stale=False)
        actions = [e["action_id"] for b in blocks.repository_detail(view)["blocks"] if b["type"] == "actions"
                   for e in b["elements"]]
        assert render.SET_LIMIT in actions
        admin_home = home_view(built.application, directory, ADMIN)
        assert render.APPLY_TEMPLATES in json.dumps(admin_home) and len(admin_home["blocks"]) <= 100
        assert render.APPLY_TEMPLATES not in json.dumps(home_view(built.application, directory, OWNER))
    finally:
        built.close()
