"""ECR's own archive rules in a tuned policy: "archive images nobody has pulled for N days" (a `transition` by
`sinceImagePulled`) and "delete archived images after M days" (an `expire` of the archive class by
`sinceImageTransitioned`, M >= 90). The rules as ECR accepts them, the validator's one-line refusals, what the
preview counts (archived-then-expired images freed; an archive transition never a saving), and a running image
never archived. Pure; the Adjust dialog end to end is in tests/test_archive_adjust.py."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.adoption import compact
from bot.core.inuse import PIN_PREFIX, after_plan, harmed, is_pin, plan_pins, protected, unprotected
from bot.core.lifecycle import ARCHIVE_MINIMUM_DAYS, preview, validate_policy
from bot.core.models import Image
from bot.core.tuning import (
    MAX_COUNT,
    MAX_DAYS,
    Tuning,
    archives,
    describe_tuning,
    lifecycle_status,
    parse_tuning,
    tuned_policy,
    tuning_of,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GB = 2**30
ARCHIVING = Tuning(archive_days=60, archive_expire_days=120)


def days_ago(n: int) -> datetime:
    return NOW - timedelta(days=n)


def img(name: str, tags=(), pushed=200, pulled=None, size=GB, archived=None) -> Image:
    return Image(f"sha256:{name:0>64}", tuple(tags), size, days_ago(pushed),
                 None if pulled is None else days_ago(pulled),
                 status="ARCHIVED" if archived is not None else "ACTIVE",
                 archived_at=None if archived is None else days_ago(archived))


def form(**changes: str | None) -> dict[str, str | None]:
    return {k: None if v is None else str(v) for k, v in Tuning().as_dict().items()} | changes


# -- the rules -------------------------------------------------------------------------------------------

def test_the_archive_rules_are_built_as_ecr_accepts_them_after_the_keep_rule_and_the_counts():
    policy = protected(tuned_policy(ARCHIVING))
    assert validate_policy(compact(policy))[1] == []
    by_priority = {r["rulePriority"]: r for r in policy["rules"]}
    assert sorted(by_priority) == [1, 2, 3, 4, 5, 6]
    assert by_priority[1]["selection"]["tagPrefixList"] == [PIN_PREFIX]  # the bot's keep rule: first
    assert [by_priority[p]["selection"].get("tagPrefixList") for p in (3, 4)] == [["latest"], ["v"]]
    # the standard class's one `any` rule, last of its class: archive by last pull, in place of the overall count
    assert by_priority[5]["selection"] == {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days",
                                           "countNumber": 60}
    assert by_priority[5]["action"] == {"type": "transition", "targetStorageClass": "archive"}
    # the archive class's rule, last of all
    assert by_priority[6]["selection"] == {"tagStatus": "any", "storageClass": "archive",
                                           "countType": "sinceImageTransitioned", "countUnit": "days",
                                           "countNumber": 120}
    assert by_priority[6]["action"] == {"type": "expire"}
    assert not any(r["selection"].get("countType") == "imageCountMoreThan" and r["selection"]["tagStatus"] == "any"
                   for r in policy["rules"])
    assert archives(policy) and not archives(tuned_policy(Tuning()))
    assert describe_tuning(ARCHIVING) == ("keeps 1 untagged, 1 latest, 9 v*, archives the others nobody pulled for "
                                          "60 days, deletes images archived 120 days ago")
    # the repository detail's lifecycle status names the choice, as the bot put it
    put = compact(policy)
    assert lifecycle_status(put, tuned_policy(Tuning()), put) == f"tuned ({describe_tuning(ARCHIVING)})"


def test_without_the_archive_choices_the_tuned_policy_is_unchanged():
    plain = tuned_policy(Tuning())
    assert [r["action"]["type"] for r in plain["rules"]] == ["expire"] * 4
    assert plain["rules"][-1]["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20}
    # deleting archived images alone (archived by hand or by an earlier policy) keeps the overall count
    only_expiry = tuned_policy(Tuning(archive_expire_days=90))
    assert validate_policy(compact(protected(only_expiry)))[1] == []
    assert [r["action"]["type"] for r in only_expiry["rules"]] == ["expire"] * 5
    assert only_expiry["rules"][3]["selection"]["countType"] == "imageCountMoreThan"


@hypothesis_settings(max_examples=150, deadline=None)
@given(st.builds(Tuning, untagged=st.integers(1, MAX_COUNT), latest=st.integers(1, MAX_COUNT),
                 versions=st.integers(1, MAX_COUNT), overall=st.integers(1, MAX_COUNT),
                 untagged_days=st.none() | st.integers(1, MAX_DAYS), archive_days=st.none() | st.integers(1, MAX_DAYS),
                 archive_expire_days=st.none() | st.integers(ARCHIVE_MINIMUM_DAYS, MAX_DAYS)))
def test_every_valid_form_with_archive_choices_is_a_policy_ecr_accepts_and_reads_back(tuning):
    policy = tuned_policy(tuning)
    assert validate_policy(compact(policy))[1] == []
    assert validate_policy(compact(protected(policy)))[1] == []
    # the transition replaces the overall count (one `any` rule per storage class), as an age replaces the
    # untagged count: what the policy cannot hold reads back as the default
    expected = replace(tuning, untagged=Tuning().untagged if tuning.untagged_days is not None else tuning.untagged,
                       overall=Tuning().overall if tuning.archive_days is not None else tuning.overall)
    assert tuning_of(unprotected(json.loads(compact(protected(policy))))) == expected
    raw = {k: None if v is None else str(v) for k, v in tuning.as_dict().items()}
    assert parse_tuning(raw) == (tuning, {})


@pytest.mark.parametrize("field,value,says", [
    ("archive_expire_days", "30", "from 90 to 3,650 days (ECR bills an archived image 90 days at least"),
    ("archive_expire_days", "89", "out of range"), ("archive_expire_days", "4000", "out of range"),
    ("archive_expire_days", "ninety", "whole number from 90"),
    ("archive_days", "0", "out of range: from 1 to 3,650 days."), ("archive_days", "1.5", "whole number from 1"),
])
def test_a_bad_archive_value_is_named_on_its_own_input(field, value, says):
    tuning, problems = parse_tuning(form(**{field: value}))
    assert tuning is None and list(problems) == [field] and says in problems[field], problems


def test_the_archive_choices_are_optional_and_read_as_days():
    assert parse_tuning(form(archive_days="", archive_expire_days=" ")) == (Tuning(), {})
    assert parse_tuning(form(archive_days="45", archive_expire_days="90")) == (
        Tuning(archive_days=45, archive_expire_days=90), {})


# -- the validator: wrong combinations, one clear line each ------------------------------------------------

def _rules(*rules: dict) -> str:
    return json.dumps({"rules": [{"rulePriority": i, **r} for i, r in enumerate(rules, 1)]}, indent=2).ljust(100)


TRANSITION = {"selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days",
                            "countNumber": 60}, "action": {"type": "transition", "targetStorageClass": "archive"}}
ARCHIVE_EXPIRY = {"selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned",
                                "countUnit": "days", "countNumber": 90}, "action": {"type": "expire"}}
OVERALL = {"selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
           "action": {"type": "expire"}}


@pytest.mark.parametrize("text,says", [
    (_rules({**TRANSITION, "action": {"type": "expire"}}),
     "rule 1: selection.countType sinceImagePulled goes only with action type transition (to the archive): ECR "
     "refuses to expire by last pull"),
    (_rules({**ARCHIVE_EXPIRY, "selection": {**ARCHIVE_EXPIRY["selection"], "countNumber": 30}}),
     "rule 1: selection.countNumber 30 is below 90 with sinceImageTransitioned: ECR cannot expire an image archived "
     "less than 90 days ago"),
    (_rules({**ARCHIVE_EXPIRY, "action": {"type": "transition", "targetStorageClass": "archive"}}),
     "rule 1: action.type transition applies to standard images, not to storageClass 'archive'"),
    (_rules({**TRANSITION, "selection": {**TRANSITION["selection"], "storageClass": "archive"}}),
     "rule 1: selection.storageClass 'archive' is only allowed with countType sinceImageTransitioned"),
    (_rules({**ARCHIVE_EXPIRY, "selection": {**ARCHIVE_EXPIRY["selection"], "storageClass": "standard"}}),
     "rule 1: selection.countType sinceImageTransitioned needs storageClass 'archive'"),
    # the overall count and the archive transition both over any tag in the standard class: ECR takes one
    (_rules(TRANSITION, OVERALL, ARCHIVE_EXPIRY),
     "rule 1: a rule with tagStatus 'any' must have the highest rulePriority (storage class standard; rule 2 is "
     "higher)"),
])
def test_each_wrong_archive_combination_is_refused_with_one_line(text, says):
    _, problems = validate_policy(text)
    assert len(problems) == 1 and problems[0].startswith(says), problems


def test_the_archive_rules_may_sit_anywhere_their_classes_allow():
    assert validate_policy(_rules(TRANSITION, ARCHIVE_EXPIRY))[1] == []
    assert validate_policy(_rules(ARCHIVE_EXPIRY, TRANSITION))[1] == []  # `any` is last per storage class
    assert validate_policy(_rules(OVERALL, ARCHIVE_EXPIRY))[1] == []


# -- the preview -----------------------------------------------------------------------------------------

def test_the_preview_frees_archived_then_expired_images_and_never_counts_archiving_as_a_saving():
    images = [img("latest", ("latest",), pushed=300),  # kept by its count, never archived
              img("release", ("v1.0",), pushed=300),  # kept by the version count
              img("stale", ("build-1",), pushed=200, size=3 * GB),  # nobody pulled it for 200 days: archived
              img("pulled", ("build-2",), pushed=200, pulled=10),  # pulled lately: stays
              img("old-archived", ("build-0",), pushed=400, archived=130, size=5 * GB),  # archived 130 days: expires
              img("new-archived", ("build-00",), pushed=400, archived=100, size=7 * GB)]  # archived 100 days: kept
    result = preview(images, protected(tuned_policy(ARCHIVING)), NOW, {})
    acts = {d.image.digest.removeprefix("sha256:").lstrip("0"): d.action for d in result.decisions}
    assert acts == {"stale": "transition", "old-archived": "expire"}
    assert result.bytes_freed == 5 * GB  # the archived image that expires, and nothing else
    assert result.bytes_archived == 3 * GB and result.archiving_count == 1
    assert result.remaining_image_count == 5  # an archived image is still stored (and billed)
    # the same estate without archiving: the overall count (20) keeps all of it, and nothing moves
    plain = preview(images, protected(tuned_policy(Tuning())), NOW, {})
    assert plain.decisions == [] and plain.bytes_archived == 0


def test_a_running_image_nobody_pulled_is_never_archived_through_the_tuned_policy():
    """The image runs (ECS, say) but ECR's last pull is old: the policy as written would archive it; the bot's
    adopted form (its pin, under the keep rule that comes first) keeps it, and the final check finds no harm."""
    running = img("running", ("build-7",), pushed=300)
    idle = img("idle", ("build-6",), pushed=300)
    images = [running, idle, img("fresh", ("build-8",), pushed=5)]
    used = {running.digest: ["ecs service web"]}
    as_written = tuned_policy(ARCHIVING)
    assert [(i.digest, action) for i, _, action in harmed(images, as_written, used, NOW)] == [
        (running.digest, "transition")]
    guarded = protected(as_written)
    plan = plan_pins(images, used, guarded, NOW)
    assert plan.pin == (running.digest,)
    pinned = after_plan(images, plan)
    assert any(is_pin(t) for i in pinned if i.digest == running.digest for t in i.tags)
    assert harmed(pinned, guarded, used, NOW) == []
    result = preview(pinned, guarded, NOW, {})
    assert {d.image.digest: d.action for d in result.decisions} == {idle.digest: "transition"}
