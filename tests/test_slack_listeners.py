"""The Slack listeners as plain functions: each called directly with mocks for what Bolt injects (ack, respond, the
Web API client) and the real services over moto, asserting what was acknowledged, answered, opened and changed.
The same listeners over signed HTTP are in tests/test_slack_e2e.py, tests/test_owner_decisions.py,
tests/test_watch_slack.py and the others."""
from __future__ import annotations

import json
from unittest import mock

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.config import load_settings
from bot.render import blocks
from bot.render import watch as watch_render
from bot.slack import actions, commands, home, views, watch
from bot.slack.directory import SlackDirectory
from bot.wiring import components
from tests.helpers.aws import ACCOUNT, current_policy, ecr, load, repository, run_cli
from tests.helpers.decisions import decisions_estate, tuning_state
from tests.helpers.slack import ADMIN, ARN, OWNER, STRANGER

ATTIC = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/attic"


@pytest.fixture
def built(aws, capsys, monkeypatch):
    """The `shop` repository (owned by OWNER, no lifecycle policy) scanned once; the real services over it."""
    monkeypatch.setenv("ECR_COST_ADMINS", ADMIN)
    load([repository()])
    assert run_cli(capsys, "scan")[0] == 0
    settings = load_settings()
    with components(settings) as parts:
        yield parts


@pytest.fixture
def client():
    """The Web API client: every method a mock; views.open answers with the view it was given, as Slack does."""
    web = mock.Mock(name="client")
    web.views_open.side_effect = lambda trigger_id, view: {"ok": True, "view": {**view, "id": "V0FORM01", "hash": "h1"}}
    return web


@pytest.fixture
def directory(built, client):
    return SlackDirectory(client, built.settings.admins)


def text_of(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False)


def body(user: str, action_ts: str = "1.0001", container: str = "message") -> dict:
    return {"user": {"id": user}, "trigger_id": "1.2.3", "container": {"type": container},
            "response_url": "https://hooks.example/response/1" if container == "message" else None,
            "action_ts": action_ts}


def click(built, directory, client, action_id: str, user: str, value: str = ARN, action_ts: str = "1.0001",
          container: str = "message"):
    """actions.on_click as Bolt calls it; (ack, respond) mocks, sharing one parent so their order is recorded."""
    calls = mock.Mock()
    action = {"action_id": action_id, "value": value, "action_ts": action_ts}
    actions.on_click(ack=calls.ack, body=body(user, action_ts, container), action=action, respond=calls.respond,
                     client=client, application=built.application, directory=directory)
    return calls


def slack_error(error: str) -> SlackApiError:
    response = SlackResponse(client=None, http_verb="POST", api_url="https://slack.example/api", req_args={},
                             data={"ok": False, "error": error}, headers={}, status_code=200)
    return SlackApiError(error, response)


# /ecr-cost

def test_the_command_acknowledges_before_answering_with_the_repositorys_detail(built):
    calls = mock.Mock()
    commands.ecr_cost(ack=calls.ack, command={"text": "  shop "}, respond=calls.respond,
                      application=built.application)
    assert [c[0] for c in calls.mock_calls] == ["ack", "respond"]  # acknowledged first, answered once
    assert calls.ack.call_args == mock.call()
    answer = calls.respond.call_args.kwargs
    assert answer["response_type"] == "ephemeral"
    assert "shop" in text_of(answer["blocks"]) and "us-east-1" in text_of(answer["blocks"])


def test_the_command_names_an_unknown_repository_and_a_long_query_without_raising(built):
    respond = mock.Mock()
    commands.ecr_cost(ack=mock.Mock(), command={"text": "nosuchrepo"}, respond=respond,
                      application=built.application)
    assert "nosuchrepo" in text_of(respond.call_args.kwargs)
    commands.ecr_cost(ack=mock.Mock(), command={"text": "x" * 1_001}, respond=respond, application=built.application)
    assert "1,001 characters" in respond.call_args.kwargs["text"]
    assert respond.call_args.kwargs["response_type"] == "ephemeral"


def test_the_command_answers_a_failure_with_one_line_and_no_traceback(built, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(built.application, "latest", broken)
    calls = mock.Mock()
    commands.ecr_cost(ack=calls.ack, command={"text": ""}, respond=calls.respond, application=built.application)
    assert [c[0] for c in calls.mock_calls] == ["ack", "respond"]
    assert calls.respond.call_args.kwargs["text"] == (":x: Something went wrong answering that; the error is in "
                                                      "the bot's log.")


# the buttons

def test_preview_is_for_anyone_and_answers_ephemerally_without_changing_anything(built, directory, client):
    calls = click(built, directory, client, blocks.PREVIEW, STRANGER)
    assert [c[0] for c in calls.mock_calls] == ["ack", "respond"]
    answer = calls.respond.call_args.kwargs
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "shop" in text_of(answer)
    assert current_policy() is None
    client.chat_postMessage.assert_not_called()


def test_adopt_by_the_owner_replaces_the_message_and_a_redelivery_does_nothing(built, directory, client):
    calls = click(built, directory, client, blocks.ADOPT, OWNER, action_ts="7.0001")
    assert calls.mock_calls[0] == mock.call.ack()
    replaced = calls.respond.call_args_list[0].kwargs
    assert replaced["replace_original"] is True and "shop" in text_of(replaced["blocks"])
    adopted = current_policy()
    assert adopted is not None and json.loads(adopted)["rules"]

    again = click(built, directory, client, blocks.ADOPT, OWNER, action_ts="7.0001")  # Slack's retry
    assert again.mock_calls == [mock.call.ack()]  # acknowledged, nothing answered twice
    assert current_policy() == adopted


def test_adopt_by_someone_else_is_refused_and_changes_nothing(built, directory, client):
    calls = click(built, directory, client, blocks.ADOPT, STRANGER)
    [refusal] = calls.respond.call_args_list
    assert refusal.kwargs["response_type"] == "ephemeral" and refusal.kwargs["replace_original"] is False
    assert blocks.refusal("shop", [OWNER]) == refusal.kwargs["text"]
    assert current_policy() is None


def test_a_repository_gone_from_the_scan_is_said_so(built, directory, client):
    gone = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/gone"
    calls = click(built, directory, client, blocks.ADOPT, OWNER, value=gone)
    assert calls.respond.call_args.kwargs["text"] == ("That repository is no longer in the latest scan; nothing "
                                                      "was changed.")


def test_adjust_opens_the_form_with_the_clicks_trigger_then_fills_its_preview(built, directory, client):
    calls = click(built, directory, client, blocks.ADJUST, STRANGER)
    assert calls.mock_calls == [mock.call.ack()]  # the form is the answer: nothing through respond
    opened = client.views_open.call_args.kwargs
    assert opened["trigger_id"] == "1.2.3" and opened["view"]["private_metadata"] == ARN
    assert "Computing the preview" in text_of(opened["view"])
    updated = client.views_update.call_args.kwargs
    assert updated["view_id"] == "V0FORM01" and updated["hash"] == "h1"
    assert "Computing the preview" not in text_of(updated["view"])


def test_a_form_that_cannot_open_is_answered_with_a_retry_hint(built, directory, client):
    client.views_open.side_effect = slack_error("expired_trigger_id")
    calls = click(built, directory, client, blocks.DECLINE, OWNER)
    assert calls.respond.call_args.kwargs["text"] == ("The form could not be opened (it must open within 3 seconds "
                                                      "of the click); please press the button again.")
    client.views_update.assert_not_called()


def test_a_click_in_app_home_republishes_home_and_answers_by_direct_message(built, directory, client):
    calls = click(built, directory, client, blocks.ADOPT, OWNER, container="view")
    assert calls.mock_calls == [mock.call.ack()]  # Home has no response_url
    published = client.views_publish.call_args.kwargs
    assert published["user_id"] == OWNER and published["view"]["type"] == "home"
    assert current_policy() is not None

    preview = click(built, directory, client, blocks.PREVIEW, STRANGER, action_ts="2.0001", container="view")
    assert preview.mock_calls == [mock.call.ack()]
    dm = client.chat_postMessage.call_args.kwargs
    assert dm["channel"] == STRANGER and "shop" in text_of(dm)


def test_a_claim_asks_the_admins_by_direct_message_and_tells_the_claimer(aws, capsys, monkeypatch, client):
    monkeypatch.setenv("ECR_COST_ADMINS", ADMIN)
    unowned = repository()
    unowned.tags.clear()
    load([unowned])
    assert run_cli(capsys, "scan")[0] == 0
    with components(load_settings()) as parts:
        directory = SlackDirectory(client, parts.settings.admins)
        calls = click(parts, directory, client, blocks.CLAIM, STRANGER)
    asked = client.chat_postMessage.call_args.kwargs
    assert asked["channel"] == ADMIN and STRANGER in text_of(asked)
    told = calls.respond.call_args.kwargs
    assert told["response_type"] == "ephemeral" and told["text"].startswith(f"Asked the admins (<@{ADMIN}>)")


# App Home

def test_home_opened_publishes_the_viewers_home_and_ignores_the_messages_tab(built, directory, client):
    home.on_home_opened(event={"user": OWNER, "tab": "messages"}, client=client, application=built.application,
                        directory=directory)
    client.views_publish.assert_not_called()
    home.on_home_opened(event={"user": OWNER, "tab": "home"}, client=client, application=built.application,
                        directory=directory)
    published = client.views_publish.call_args.kwargs
    assert published["user_id"] == OWNER and "shop" in text_of(published["view"])


def test_paging_acknowledges_then_publishes_the_page_asked_for(built, directory, client):
    ack = mock.Mock()
    home.on_page(ack=ack, body={"user": {"id": OWNER}}, action={"value": "not a page"}, client=client,
                 application=built.application, directory=directory)
    ack.assert_called_once_with()
    assert client.views_publish.call_args.kwargs["view"] == home.home_view(built.application, directory, OWNER, 0)


# the watch

def watch_click(built, directory, client, action_id: str, user: str, value: str = ARN, container: str = "message"):
    calls = mock.Mock()
    watch.on_click(ack=calls.ack, body=body(user, container=container),
                   action={"action_id": action_id, "value": value, "action_ts": "3.0001"}, respond=calls.respond,
                   client=client, application=built.application, limits=built.limits, templates=built.templates,
                   directory=directory)
    return calls


def limit_form(amount: str, view_id: str = "V0LIMIT01") -> dict:
    return {"id": view_id, "private_metadata": ARN,
            "state": {"values": {"limit": {"limit": {"type": "plain_text_input", "value": amount}}}}}


def test_set_a_limit_opens_its_form_for_anyone(built, directory, client):
    calls = watch_click(built, directory, client, watch_render.SET_LIMIT, STRANGER)
    assert calls.mock_calls == [mock.call.ack()]
    opened = client.views_open.call_args.kwargs
    assert opened["trigger_id"] == "1.2.3" and opened["view"]["callback_id"] == watch_render.LIMIT_VIEW


def test_a_limit_set_by_the_owner_is_tagged_and_told_and_a_bad_amount_stays_in_the_form(built, directory, client):
    ack = mock.Mock()
    watch.on_limit(ack=ack, body={"user": {"id": OWNER}}, view=limit_form("five dollars"), client=client,
                   application=built.application, limits=built.limits, directory=directory)
    assert ack.call_args.kwargs["response_action"] == "errors" and "limit" in ack.call_args.kwargs["errors"]
    client.chat_postMessage.assert_not_called()

    ack = mock.Mock()
    watch.on_limit(ack=ack, body={"user": {"id": OWNER}}, view=limit_form("5"), client=client,
                   application=built.application, limits=built.limits, directory=directory)
    ack.assert_called_once_with()
    tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=ARN)["tags"]}
    assert float(tags["ecr-cost-limit-usd"]) == 5
    told = client.chat_postMessage.call_args.kwargs
    assert told["channel"] == OWNER and "now has a limit of" in told["text"] and "Undo" in text_of(told["blocks"])

    again = mock.Mock()  # the same submission delivered again: the form says so, nothing is told twice
    watch.on_limit(ack=again, body={"user": {"id": OWNER}}, view=limit_form("5"), client=client,
                   application=built.application, limits=built.limits, directory=directory)
    assert again.call_args.kwargs["response_action"] == "update"
    assert client.chat_postMessage.call_count == 1


def test_only_an_admin_may_set_the_default_policy_for_new_repositories(built, directory, client):
    calls = watch_click(built, directory, client, watch_render.APPLY_TEMPLATES, OWNER, value="", container="view")
    assert calls.mock_calls == [mock.call.ack()]
    told = client.chat_postMessage.call_args.kwargs
    assert told["channel"] == OWNER and told["text"] == ("Only an admin can set the default policy for new "
                                                         "repositories; nothing was changed.")


def test_undo_restores_no_limit_once_and_answers_in_app_home_by_direct_message(built, directory, client):
    watch.on_limit(ack=mock.Mock(), body={"user": {"id": OWNER}}, view=limit_form("5"), client=client,
                   application=built.application, limits=built.limits, directory=directory)
    calls = watch_click(built, directory, client, watch_render.UNDO_LIMIT, OWNER, container="view")
    assert calls.mock_calls == [mock.call.ack()]  # App Home: no response_url, so the app's DM
    told = client.chat_postMessage.call_args.kwargs
    assert told["channel"] == OWNER and told["text"].startswith(":leftwards_arrow_with_hook: Undone: ")
    tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=ARN)["tags"]}
    assert "ecr-cost-limit-usd" not in tags

    watch_click(built, directory, client, watch_render.UNDO_LIMIT, OWNER, container="view")  # Slack's retry
    assert client.chat_postMessage.call_count == 2  # the limit's message and the one Undo, nothing more


# the modals

def adjust_form(state: dict, view_id: str = "V0ADJUST1", arn: str = ARN) -> dict:
    """The Adjust form as a submission (or an input's block_actions) carries it: its id, hash, metadata, state."""
    return {"id": view_id, "hash": "h7", "callback_id": blocks.ADJUST_VIEW, "private_metadata": arn,
            "state": {"values": state}}


def sweep_days(value: str) -> dict:
    return {blocks.SWEEP_DAYS: {blocks.SWEEP_DAYS: {"type": "number_input", "value": value}}}


def submit_adjust(built, directory, client, view: dict, user: str = OWNER):
    ack = mock.Mock()
    views.on_adjust(ack=ack, body={"user": {"id": user}}, view=view, client=client, application=built.application,
                    directory=directory)
    return ack


def working(title: str, repository: str = "shop") -> mock._Call:
    return mock.call(response_action="update", view=blocks.notice_modal(title, f":hourglass: Working on "
                                                                                f"*{repository}*…"))


def shown(client) -> str:
    """The text the form shows after the outcome (the last views.update)."""
    [section] = client.views_update.call_args.kwargs["view"]["blocks"]
    return section["text"]["text"]


def test_a_change_in_the_adjust_form_is_acknowledged_then_its_preview_refreshed_with_the_views_hash(built, client):
    ack = mock.Mock()
    views.on_tuning_input(ack=ack, body={"view": adjust_form(tuning_state(versions="3"))}, client=client,
                          application=built.application)
    ack.assert_called_once_with()
    updated = client.views_update.call_args.kwargs
    assert (updated["view_id"], updated["hash"]) == ("V0ADJUST1", "h7")  # an older refresh never wins
    assert "*Preview* adopting it" in text_of(updated["view"])
    versions = next(b for b in updated["view"]["blocks"] if b.get("block_id") == "versions")
    assert versions["element"]["initial_value"] == "3"  # what the person typed stays in the form

    views.on_tuning_input(ack=ack, body={"view": adjust_form(tuning_state(versions="0"))}, client=client,
                          application=built.application)
    assert "*Preview* fix the form first" in text_of(client.views_update.call_args.kwargs["view"])
    assert current_policy() is None

    client.views_update.reset_mock()
    client.views_update.side_effect = slack_error("hash_conflict")  # the person typed again meanwhile: no raise
    views.on_tuning_input(ack=ack, body={"view": adjust_form(tuning_state())}, client=client,
                          application=built.application)
    client.views_update.assert_called_once()
    views.on_tuning_input(ack=ack, body={"container": {"type": "message"}}, client=client,
                          application=built.application)  # no view: acknowledged, nothing refreshed
    assert ack.call_count == 4 and client.views_update.call_count == 1


def test_an_invalid_adjust_form_is_answered_on_its_inputs_and_changes_nothing(built, directory, client):
    ack = submit_adjust(built, directory, client, adjust_form(tuning_state(versions="0") | sweep_days("ten")))
    ack.assert_called_once()
    answer = ack.call_args.kwargs
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {"versions", blocks.SWEEP_DAYS}
    client.views_update.assert_not_called()
    assert current_policy() is None and built.application.decision_log() == []


def test_adjust_by_the_owner_adopts_the_tuned_policy_and_opts_in_once_per_form(built, directory, client):
    ack = submit_adjust(built, directory, client, adjust_form(tuning_state(versions="3") | sweep_days("30")))
    assert ack.call_args_list == [working("Adjust the policy")]
    assert client.views_update.call_args.kwargs["view_id"] == "V0ADJUST1"
    done = shown(client)
    assert done.startswith(":white_check_mark: Tuned policy adopted on *shop*") and "Roll back" in done
    assert "nobody has pulled for 30 days" in done and "Stop sweeping" in done
    rules = json.loads(current_policy() or "{}")["rules"]
    assert any(r["selection"].get("tagPrefixList") == ["v"] and r["selection"]["countNumber"] == 3 for r in rules)
    tags = {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=ARN)["tags"]}
    assert tags["ecr-cost-expire-unpulled-days"] == "30"
    adopted = current_policy()

    again = submit_adjust(built, directory, client, adjust_form(tuning_state(versions="5")))  # the same form again
    assert again.call_args_list == [mock.call(response_action="update", view=blocks.notice_modal(
        "Adjust the policy", "This form was already submitted; nothing more was changed."))]
    assert client.views_update.call_count == 1 and current_policy() == adopted


def test_adjust_by_someone_else_is_refused_in_the_form(built, directory, client):
    ack = submit_adjust(built, directory, client, adjust_form(tuning_state()), user=STRANGER)
    assert ack.call_args_list == [working("Adjust the policy")]
    assert shown(client) == blocks.refusal("shop", [OWNER])
    assert current_policy() is None and built.application.decision_log() == []


def test_a_form_naming_a_repository_gone_from_the_scan_changes_nothing(built, directory, client):
    gone = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/gone"
    ack = submit_adjust(built, directory, client, adjust_form(tuning_state(), arn=gone))
    assert ack.call_args_list == [mock.call(response_action="update", view=blocks.notice_modal(
        "Adjust the policy", "That repository is not in the latest scan; nothing was changed."))]
    client.views_update.assert_not_called()


def decline_form(reason: str | None, note: str | None = None, view_id: str = "V0DECLINE") -> dict:
    option = {"text": {"type": "plain_text", "text": reason}, "value": reason} if reason else None
    return {"id": view_id, "private_metadata": ARN, "state": {"values": {
        "reason": {"reason": {"type": "static_select", "selected_option": option}},
        "note": {"note": {"type": "plain_text_input", "value": note}}}}}


def test_decline_checks_its_inputs_then_exempts_the_repository_with_the_reason(built, directory, client):
    def decline(view: dict, user: str = OWNER) -> mock.Mock:
        ack = mock.Mock()
        views.on_decline(ack=ack, body={"user": {"id": user}}, view=view, client=client,
                         application=built.application, directory=directory)
        return ack

    for bad in ("bogus", None):
        assert decline(decline_form(bad)).call_args == mock.call(
            response_action="errors", errors={"reason": "Choose compliance, data retention or other."})
    assert decline(decline_form("other", "x" * 501)).call_args == mock.call(
        response_action="errors", errors={"note": "At most 500 characters (501 now)."})
    assert built.application.decision_log() == [] and client.views_update.call_count == 0

    refused = decline(decline_form("other", view_id="V0STRANGR"), user=STRANGER)
    assert refused.call_args_list == [working("Decline the policy")]
    assert shown(client) == blocks.refusal("shop", [OWNER]) and built.application.decision_log() == []

    ack = decline(decline_form("data_retention", " kept 7 years "))
    assert ack.call_args_list == [working("Decline the policy")]
    assert shown(client).startswith("*shop* is exempt (data retention): no more nudges")
    [declined] = built.application.decision_log()
    assert (declined.action, declined.reason, declined.note, declined.user_id) == (
        "declined", "data_retention", "kept 7 years", OWNER)


@pytest.fixture
def with_attic(built, capsys):
    """`attic` added beside `shop`: owned by OWNER, nothing pushed or pulled for 200 days (unused), rescanned."""
    load([decisions_estate()[1]])
    assert run_cli(capsys, "scan")[0] == 0
    return built


def delete_form(name: str, arn: str = ATTIC, view_id: str = "V0DELETE1") -> dict:
    return {"id": view_id, "private_metadata": arn,
            "state": {"values": {"confirm_name": {"confirm_name": {"type": "plain_text_input", "value": name}}}}}


def delete(built, directory, client, view: dict, user: str = OWNER) -> mock.Mock:
    ack = mock.Mock()
    views.on_delete(ack=ack, body={"user": {"id": user}}, view=view, client=client, application=built.application,
                    directory=directory)
    return ack


def attic_exists() -> bool:
    client = ecr()
    try:
        return bool(client.describe_repositories(repositoryNames=["attic"])["repositories"])
    except client.exceptions.RepositoryNotFoundException:
        return False


def test_delete_asks_for_the_exact_name_and_refuses_a_repository_used_lately(with_attic, directory, client):
    ack = delete(with_attic, directory, client, delete_form("atic"))
    assert ack.call_args == mock.call(response_action="errors", errors={
        "confirm_name": "That is not this repository's name: type attic exactly."})
    assert attic_exists() and client.views_update.call_count == 0

    ack = delete(with_attic, directory, client, delete_form("shop", arn=ARN, view_id="V0DELSHOP"))
    assert ack.call_args_list == [working("Delete repository")]
    assert "is not unused" in shown(client) and "nothing was deleted" in shown(client)
    client.files_upload_v2.assert_not_called()
    assert ecr().describe_repositories(repositoryNames=["shop"])["repositories"]


def test_delete_sends_the_export_before_deleting_and_a_refused_upload_deletes_nothing(with_attic, directory,
                                                                                       client):
    client.conversations_open.return_value = {"ok": True, "channel": {"id": "D0OWNER01"}}
    client.files_upload_v2.side_effect = slack_error("not_allowed_token_type")
    ack = delete(with_attic, directory, client, delete_form("attic", view_id="V0DELETE0"))
    assert ack.call_args_list == [working("Delete repository", "attic")]
    assert "could not be delivered" in shown(client) and "nothing was deleted" in shown(client)
    assert attic_exists() and with_attic.application.decision_log() == []

    client.files_upload_v2.side_effect = None
    ack = delete(with_attic, directory, client, delete_form("attic"))
    assert ack.call_args_list == [working("Delete repository", "attic")]
    client.conversations_open.assert_called_with(users=OWNER)
    upload = client.files_upload_v2.call_args.kwargs
    assert upload["channel"] == "D0OWNER01" and upload["filename"] == "attic-export.json"
    export = json.loads(upload["content"])
    assert export["repository"] == "attic" and len(export["images"]) == 4
    done = shown(client)
    assert done.startswith(":wastebasket: *attic* was deleted: 4 images") and "sent to you as a file" in done
    assert not attic_exists()
    [deleted] = with_attic.application.decision_log()
    assert (deleted.action, deleted.user_id) == ("deleted", OWNER)

    again = delete(with_attic, directory, client, delete_form("attic"))  # a retry: the deleted one is gone
    assert again.call_args_list == [mock.call(response_action="update", view=blocks.notice_modal(
        "Delete repository", "That repository is not in the latest scan; nothing was changed."))]
    assert client.files_upload_v2.call_count == 2
