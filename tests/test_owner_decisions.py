"""Owners decide in Slack: tune the policy with a live preview, exempt a repository with a reason, delete an
unused one (exported first), claim an unowned one. End to end over signed HTTP (`block_actions` and
`view_submission` payloads as Slack sends them) against `serve`, moto's server and the Slack stand-in; the pure
parts (the form, the exemption) on their own."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.adoption import compact
from bot.config import shipped_base_policy_text
from bot.core.analysis import exemption_of
from bot.core.inuse import protected
from bot.core.lifecycle import validate_policy
from bot.core.models import PolicyDecision
from bot.core.tuning import MAX_COUNT, MAX_DAYS, Tuning, lifecycle_status, parse_tuning, tuned_policy, tuning_of
from bot.errors import PolicyOperationError
from bot.gate import Actor
from bot.render import blocks
from bot.sample import MB, blob, image
from tests.helpers.aws import ACCOUNT, CUSTOM, NOW, current_policy, ecr, load, run_cli
from tests.helpers.decisions import (
    SHOP,
    decisions_estate,
    interact,
    opened_view,
    submission,
    tags_of,
    tuning_state,
    view_text,
)
from tests.helpers.slack import ADMIN, ALICE, OWNER, STRANGER, click, decisions, responses_to

BASE_POLICY = json.loads(shipped_base_policy_text())
ATTIC = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/attic"
ORPHAN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/orphan"


# -- the form and the exemption, pure -------------------------------------------------------------------

def test_the_base_policy_round_trips_through_the_form():
    tuning = tuning_of(BASE_POLICY)
    assert tuning == Tuning(untagged=1, latest=1, prefix="v", versions=9, overall=20, untagged_days=None)
    assert lifecycle_status(compact(tuned_policy(tuning)), BASE_POLICY) == "base"
    # as the bot adopts it (its first rule keeping in-use images, priorities shifted): still the base policy
    assert lifecycle_status(compact(protected(tuned_policy(tuning))), BASE_POLICY) == "base"
    tuned = compact(protected(tuned_policy(replace(tuning, versions=3))))
    assert lifecycle_status(tuned, BASE_POLICY) == "custom (4 rules)"
    assert lifecycle_status(tuned, BASE_POLICY, tuned) == "tuned (keeps 1 untagged, 1 latest, 3 v*, 20 overall)"


PREFIXES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,30}", fullmatch=True).filter(
    lambda p: not p.startswith("latest") and not "latest".startswith(p))


@hypothesis_settings(max_examples=150, deadline=None)
@given(st.builds(Tuning, untagged=st.integers(1, MAX_COUNT), latest=st.integers(1, MAX_COUNT), prefix=PREFIXES,
                 versions=st.integers(1, MAX_COUNT), overall=st.integers(1, MAX_COUNT),
                 untagged_days=st.none() | st.integers(1, MAX_DAYS)))
def test_every_valid_form_is_a_policy_ecr_accepts_and_reads_back(tuning):
    text = compact(tuned_policy(tuning))
    assert validate_policy(text)[1] == []
    assert validate_policy(compact(protected(json.loads(text))))[1] == []
    # an age replaces the untagged count (ECR allows one untagged rule): the count is not in the policy
    expected = tuning if tuning.untagged_days is None else replace(tuning, untagged=Tuning().untagged)
    assert tuning_of(json.loads(text)) == expected
    raw = {k: None if v is None else str(v) for k, v in tuning.as_dict().items()}
    assert parse_tuning(raw) == (tuning, {})


@pytest.mark.parametrize("field,value,says", [
    ("untagged", "0", "out of range"), ("versions", "1000000000", "out of range"),
    ("overall", "", "whole number"), ("latest", "1.5", "whole number"), ("latest", "-3", "whole number"),
    ("untagged_days", "0", "out of range"), ("untagged_days", "99999", "out of range"),
    ("prefix", "has space", "no spaces"), ("prefix", "v" * 200, "At most 128"), ("prefix", " ", "Enter the prefix"),
    ("prefix", "latest", "overlaps"), ("prefix", "-v", "starts with"), ("prefix", "v\n", "no spaces"),
])
def test_a_bad_value_is_named_on_its_own_input(field, value, says):
    values = {k: None if v is None else str(v) for k, v in Tuning().as_dict().items()} | {field: value}
    tuning, problems = parse_tuning(values)
    assert tuning is None and list(problems) == [field] and says in problems[field]


def _decision(action: str, at_minutes: int, **fields) -> PolicyDecision:
    return PolicyDecision(None, "r", ACCOUNT, "us-east-1", "arn", action, "U1", "slack",
                          NOW.replace(microsecond=0) + timedelta(minutes=at_minutes),
                          None, None, None, **fields)


def test_an_exemption_comes_from_the_tag_or_the_latest_decline_until_lifted_or_adopted():
    declined = _decision("declined", 1, reason="compliance", note="SOX")
    assert exemption_of({}, []) is None
    assert exemption_of({}, [declined]).text == "compliance: SOX"
    assert exemption_of({}, [declined, _decision("exemption_lifted", 2)]) is None
    assert exemption_of({}, [declined, _decision("tuned", 2)]) is None
    assert exemption_of({}, [declined, _decision("snoozed", 2)]).reason == "compliance"
    assert exemption_of({}, [_decision("declined", 1)]).text == "no reason given"
    tagged = exemption_of({"ecr-cost-exempt": "legal hold"}, [declined, _decision("exemption_lifted", 2)])
    assert tagged.source == "tag" and tagged.text == "legal hold (tag ecr-cost-exempt)"


# -- end to end ----------------------------------------------------------------------------------------

@pytest.fixture
def served_estate():
    """`served` (tests/conftest.py) serves this module's estate."""
    return decisions_estate()


def test_adjust_previews_each_change_and_adopts_exactly_the_tuned_policy_with_its_undo(served, slack, settings,
                                                                                      capsys):
    click(served, slack, blocks.ADJUST, OWNER, value=SHOP)
    view = opened_view(slack, blocks.ADJUST_VIEW)
    labels = " ".join(b["label"]["text"].lower() for b in view["blocks"] if b["type"] == "input")
    for word in ("untagged", "latest", "prefix", "versions", "overall", "days"):
        assert word in labels
    assert view["private_metadata"] == SHOP
    # the base policy's preview follows the opening: of 30 images it expires 2 untagged, 1 latest, 16 releases
    view_text(slack, view["id"], "expires 19 of 30 images")
    # keep 2 versions instead of 9: 23 of the 25 releases expire too (2 of 3 untagged, 1 of 2 latest: 26)
    status, _ = interact(served, {
        "type": "block_actions", "user": {"id": OWNER}, "team": {"id": "T0EXAMPLE"}, "api_app_id": "A0ECRCOST",
        "trigger_id": "7.8.9", "container": {"type": "view", "view_id": view["id"]},
        "view": {**slack.views[view["id"]], "state": {"values": tuning_state(versions="2")}},
        "actions": [{"type": "number_input", "block_id": "versions", "action_id": "tune_versions", "value": "2",
                     "action_ts": f"{time.time():.6f}"}]})
    assert status == 200
    shown = view_text(slack, view["id"], "expires 26 of 30 images")
    assert "/month" in shown
    # the same figure as the CLI's preview of that very policy
    policy_file = settings.db_path + ".tuned.json"
    with open(policy_file, "w") as f:
        f.write(compact(tuned_policy(Tuning(versions=2))))
    code, out, _ = run_cli(capsys, "policy", "preview", "shop", "--policy", policy_file, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["expiring_image_count"] == 26 and doc["adopted_form"]["expiring_image_count"] == 26
    assert f"${doc['adopted_form']['monthly_savings_usd']:,.2f}/month" in shown

    status, answer = interact(served, submission(slack.views[view["id"]], tuning_state(versions="2"), OWNER))
    assert status == 200 and answer["response_action"] == "update"
    done = view_text(slack, view["id"], "Tuned policy adopted")
    assert "Roll back" in done
    [decision] = decisions(settings.db_path)
    assert decision.action == "tuned" and decision.user_id == OWNER and decision.policy_before == CUSTOM
    live = json.loads(current_policy())
    assert live == json.loads(decision.policy_after) == protected(tuned_policy(Tuning(versions=2)))
    code, out, _ = run_cli(capsys, "repo", "shop", "--format", "json")
    assert json.loads(out)["lifecycle_status"].startswith("tuned (keeps 1 untagged, 1 latest, 2 v*")

    _, response_id = click(served, slack, blocks.ROLLBACK, OWNER, value=SHOP)
    responses_to(slack, response_id)
    assert current_policy() == CUSTOM  # the original, byte for byte
    assert [d.action for d in decisions(settings.db_path)] == ["tuned", "rolled_back"]


def test_bad_or_hostile_submissions_are_answered_on_the_inputs_and_change_nothing(served, slack, settings):
    click(served, slack, blocks.ADJUST, OWNER, value=SHOP)
    view = opened_view(slack, blocks.ADJUST_VIEW)
    for field, value in [("untagged", "0"), ("overall", "1000000000"), ("prefix", "v 1"), ("prefix", "v" * 200),
                         ("prefix", "latest"), ("versions", "nine")]:
        status, answer = interact(served, submission(view, tuning_state(**{field: value}), OWNER))
        assert status == 200 and answer["response_action"] == "errors", (field, value, answer)
        assert list(answer["errors"]) == [field]
    # a stranger's submission crafted with a real repository's ARN: refused from the live owner tag
    stranger_view = {**view, "id": "VSTRANGER1"}
    slack.views["VSTRANGER1"] = stranger_view
    status, answer = interact(served, submission(stranger_view, tuning_state(), STRANGER))
    assert status == 200 and answer["response_action"] == "update"
    assert "Only the owners" in view_text(slack, "VSTRANGER1", "Nothing was changed")
    # tampered metadata: not a repository of the latest scan
    for metadata in ("arn:aws:ecr:us-east-1:999999999999:repository/shop", "", "{\"arn\": 1}"):
        status, answer = interact(served, submission(view, tuning_state(), OWNER, private_metadata=metadata))
        assert status == 200 and "not in the latest scan" in json.dumps(answer)
    # the bot's own keep prefix would collide with the rule that protects in-use images: said on the input
    status, answer = interact(served, submission(view, tuning_state(prefix="ecr-cost-keep"), OWNER))
    assert answer["response_action"] == "errors" and "keeps in-use images" in answer["errors"]["prefix"]
    # malformed state (values a list, an element a list): errors on the inputs, never a 500 (nor a traceback:
    # the fixture checks the log)
    for state in ({"values": []}, {"values": {"untagged": []}}, []):
        payload = submission(view, {}, OWNER)
        payload["view"]["state"] = state
        status, answer = interact(served, payload)
        assert status == 200 and answer["response_action"] == "errors"
    assert decisions(settings.db_path) == [] and current_policy() == CUSTOM
    # the same submission twice (a double click, a retry): acted on once
    first = interact(served, submission(view, tuning_state(versions="5"), OWNER))[1]
    second = interact(served, submission(view, tuning_state(versions="5"), OWNER))[1]
    assert "Working on" in json.dumps(first) and "already submitted" in json.dumps(second)
    view_text(slack, view["id"], "Tuned policy adopted")
    assert [d.action for d in decisions(settings.db_path)] == ["tuned"]


def test_decline_exempts_with_a_reason_until_an_admin_lifts_it(served, slack, settings, capsys):
    click(served, slack, blocks.DECLINE, OWNER, value=SHOP)
    view = opened_view(slack, blocks.DECLINE_VIEW)

    def reason(value: str | None, note: str | None = None) -> dict:
        option = {"text": {"type": "plain_text", "text": value}, "value": value} if value else None
        return {"reason": {"reason": {"type": "static_select", "selected_option": option}},
                "note": {"note": {"type": "plain_text_input", "value": note}}}

    for bad in ("bogus", None):
        status, answer = interact(served, submission(view, reason(bad), OWNER))
        assert answer["response_action"] == "errors" and list(answer["errors"]) == ["reason"]
    answer = interact(served, submission(view, reason("other", "x" * 501), OWNER))[1]
    assert list(answer["errors"]) == ["note"]
    assert decisions(settings.db_path) == []

    interact(served, submission(view, reason("data_retention", "kept 7 years <!channel>"), OWNER))
    view_text(slack, view["id"], "is exempt (data retention)")
    [declined] = decisions(settings.db_path)
    assert (declined.action, declined.reason, declined.note) == ("declined", "data_retention",
                                                                 "kept 7 years <!channel>")
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    report = json.loads(out)
    assert {"repository": "shop", "reason": "data_retention", "note": "kept 7 years <!channel>", "source": "decision",
            "by": OWNER}.items() <= next(e for e in report["exempt"] if e["repository"] == "shop").items()

    _, response_id = click(served, slack, blocks.LIFT_EXEMPTION, OWNER, value=SHOP)
    assert "Only an admin" in json.dumps(responses_to(slack, response_id))
    _, response_id = click(served, slack, blocks.LIFT_EXEMPTION, ADMIN, value=SHOP)
    responses_to(slack, response_id)
    assert [d.action for d in decisions(settings.db_path)] == ["declined", "exemption_lifted"]
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    assert json.loads(out)["exempt"] == []


def test_a_tag_exempts_and_the_report_lists_exempt_and_unowned_repositories(aws, capsys):
    repos = decisions_estate()
    repos[1].tags["ecr-cost-exempt"] = "legal hold"
    load(repos)
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    report = json.loads(out)
    [attic] = report["exempt"]
    assert (attic["repository"], attic["reason"], attic["source"]) == ("attic", "legal hold", "tag")
    assert [u["repository"] for u in report["unowned"]] == ["orphan"]
    # the exempt repository leaves the "without a policy" line: shop has a policy, so cache and orphan remain
    assert report["without_policy_count"] == 2
    code, out, _ = run_cli(capsys, "report")
    assert "exempt (1" in out and "legal hold" in out and "without an owner (1): orphan" in out


def test_deleting_an_unused_repository_exports_it_first_and_a_wrong_name_changes_nothing(served, slack, settings):
    click(served, slack, blocks.DELETE, OWNER, value=ATTIC)
    view = opened_view(slack, blocks.DELETE_VIEW)
    assert "4 images" in json.dumps(view) or "*4* images" in json.dumps(view)

    def typed(name: str) -> dict:
        return {"confirm_name": {"confirm_name": {"type": "plain_text_input", "value": name}}}

    answer = interact(served, submission(view, typed("atic"), OWNER))[1]
    assert answer["response_action"] == "errors" and "type attic exactly" in answer["errors"]["confirm_name"]
    assert ecr().describe_repositories(repositoryNames=["attic"])["repositories"]
    # a stranger who types the name is refused by the live owner tag
    slack.views["VSTRANGER2"] = {**view, "id": "VSTRANGER2"}
    interact(served, submission(slack.views["VSTRANGER2"], typed("attic"), STRANGER))
    view_text(slack, "VSTRANGER2", "Only the owners")

    # the export must reach the person before anything is deleted: an upload Slack refuses deletes nothing
    slack.fail_methods["files.completeUploadExternal"] = "not_allowed_token_type"
    slack.views["VRETRY"] = {**view, "id": "VRETRY"}
    interact(served, submission(slack.views["VRETRY"], typed("attic"), OWNER))
    assert "could not be delivered" in view_text(slack, "VRETRY", "nothing was deleted")
    assert ecr().describe_repositories(repositoryNames=["attic"])["repositories"]
    assert decisions(settings.db_path) == []
    del slack.fail_methods["files.completeUploadExternal"]
    slack.uploads.clear()

    interact(served, submission(view, typed("attic"), OWNER))
    done = view_text(slack, view["id"], "was deleted")
    assert "sent to you as a file" in done
    client = ecr()
    with pytest.raises(client.exceptions.RepositoryNotFoundException):
        client.describe_repositories(repositoryNames=["attic"])
    methods = [m for m, _ in slack.calls]
    assert methods.index("files.getUploadURLExternal") < methods.index("files.completeUploadExternal")
    [export] = [json.loads(b) for b in slack.uploads.values()]
    assert export["repository"] == "attic" and len(export["images"]) == 4  # 1 image, 1 index and its 2 children
    for entry in export["images"]:
        document = json.loads(export["manifests"][entry["image_digest"]]["manifest"])
        assert document["schemaVersion"] == 2
    assert export["tags"] == {"owner": OWNER}
    [deleted] = decisions(settings.db_path)
    assert deleted.action == "deleted" and deleted.user_id == OWNER and "export #2" in deleted.note


def test_a_repository_in_use_or_used_lately_is_not_deleted(served, slack, settings, capsys, tmp_path):
    # shop was pushed to lately: a crafted submission for it is refused, and it stays
    click(served, slack, blocks.DELETE, OWNER, value=SHOP)
    view = opened_view(slack, blocks.DELETE_VIEW)
    interact(served, submission(view, {"confirm_name": {"confirm_name": {"type": "plain_text_input",
                                                                         "value": "shop"}}}, OWNER))
    assert "is not unused" in view_text(slack, view["id"], "nothing was deleted")
    # the CLI: --yes is required; --force skips the unused check, never the in-use one (cache was pulled lately)
    assert run_cli(capsys, "repo", "delete", "cache")[0] == 1
    code, _, err = run_cli(capsys, "repo", "delete", "cache", "--yes", "--force")
    assert code == 1 and "in use" in err and "recent-pull" in err
    code, _, err = run_cli(capsys, "repo", "delete", "cache", "--yes")
    assert code == 1 and "is not unused" in err
    assert run_cli(capsys, "repo", "cache", "--yes")[0] == 2  # --yes goes with repo delete only
    assert {r["repositoryName"] for r in ecr().describe_repositories()["repositories"]} >= {"shop", "cache"}
    assert decisions(settings.db_path) == []
    export = tmp_path / "attic.json"
    code, out, _ = run_cli(capsys, "repo", "delete", "attic", "--yes", "--export", str(export))
    assert code == 0 and "deleted attic" in out
    assert len(json.loads(export.read_text())["manifests"]) == 4
    code, _, err = run_cli(capsys, "repo", "attic")  # gone from the answers before the next scan
    assert code == 1 and "attic" in err


def test_a_claim_is_approved_by_an_admin_only_and_sets_the_owner_tag(served, slack, settings, capsys):
    _, response_id = click(served, slack, blocks.CLAIM, OWNER, value=SHOP)
    assert "already has owners" in json.dumps(responses_to(slack, response_id))

    _, response_id = click(served, slack, blocks.CLAIM, ALICE, value=ORPHAN)
    assert "Asked the admins" in json.dumps(responses_to(slack, response_id))
    request = slack.wait_for(lambda calls, _: [a for m, a in calls if m == "chat.postMessage"
                                               and a.get("channel") == ADMIN])
    sent = request[0]["blocks"]
    buttons = [e for b in (json.loads(sent) if isinstance(sent, str) else sent) if b["type"] == "actions"
               for e in b["elements"]]
    approve = next(e for e in buttons if e["action_id"] == blocks.APPROVE_CLAIM)

    _, response_id = click(served, slack, blocks.APPROVE_CLAIM, STRANGER, value=approve["value"])
    assert "only an admin" in json.dumps(responses_to(slack, response_id)).lower()
    assert tags_of("orphan")["owner"] == "the data team"

    _, response_id = click(served, slack, blocks.APPROVE_CLAIM, ADMIN, value=approve["value"])
    assert "now owns" in json.dumps(responses_to(slack, response_id))
    assert tags_of("orphan") == {"team": "data", "owner": ALICE}
    told = slack.wait_for(lambda calls, _: [a for m, a in calls if m == "chat.postMessage"
                                            and a.get("channel") == ALICE])
    assert "approved" in json.dumps(told)
    [claimed] = decisions(settings.db_path)
    assert claimed.action == "claimed" and claimed.user_id == ADMIN and ALICE in claimed.note
    assert "'the data team'" in claimed.note  # what the tag said before

    _, response_id = click(served, slack, blocks.APPROVE_CLAIM, ADMIN, value=approve["value"])
    assert "already approved" in json.dumps(responses_to(slack, response_id))
    _, response_id = click(served, slack, blocks.APPROVE_CLAIM, ADMIN, value="12345")
    assert "no such ownership claim" in json.dumps(responses_to(slack, response_id))
    for value in ("99999999999999999999", "-1", "1e3"):
        _, response_id = click(served, slack, blocks.APPROVE_CLAIM, ADMIN, value=value)
        assert "not an ownership claim" in json.dumps(responses_to(slack, response_id))
    assert len(decisions(settings.db_path)) == 1


@pytest.fixture
def in_process(aws, settings):
    """The estate in moto, scanned by the application in this process: (application, store, rows by name)."""
    from bot.wiring import build
    load(decisions_estate())
    built = build(settings)
    try:
        rows = {r.repository: r for r in built.application.scan().repositories}
        yield built.application, built.store, rows
    finally:
        built.close()


def test_an_image_pushed_while_the_export_is_delivered_stops_the_deletion(in_process):
    """The export must hold everything deleted: the repository is listed again just before DeleteRepository."""
    from bot.wiring import cli_actor
    application, store, rows = in_process

    def deliver(export_id: int, content: str) -> None:  # a CI push lands during the upload
        pushed = image([blob("hotfix", MB)], blob("hotfix-cfg", 300), ("hotfix",))
        ecr().put_image(repositoryName="attic", imageManifest=pushed.manifest, imageTag="hotfix",
                        imageManifestMediaType=pushed.media_type)

    with pytest.raises(PolicyOperationError, match="changed while it was being exported"):
        application.delete_repository(rows["attic"], cli_actor("ops"), deliver=deliver)
    assert ecr().describe_repositories(repositoryNames=["attic"])["repositories"]
    assert store.decisions() == []


def test_a_claim_on_a_repository_deleted_since_can_still_be_rejected(in_process):
    application, _, rows = in_process
    claim_id, _ = application.claim_ownership(rows["orphan"], ALICE)
    ecr().delete_repository(repositoryName="orphan", force=True)
    change = application.decide_claim(claim_id, False, Actor(ADMIN, "slack", is_admin=True))
    assert change.decision.action == "claim_rejected"
    assert application.claim_of(claim_id)[2] == "rejected"


def test_the_delete_form_holds_slacks_limits_for_the_longest_names():
    from bot.core.models import RepositoryCost
    row = RepositoryCost("n" * 256, ACCOUNT, "us-east-1", "arn:" + "n" * 256, 1, 1, 1, 1, 0.1, None, None, True,
                         False, None, (), {})
    form = blocks.delete_modal(row, row.arn)
    placeholder = form["blocks"][1]["element"]["placeholder"]["text"]
    assert len(placeholder) <= 150 and len(form["title"]["text"]) <= 24
