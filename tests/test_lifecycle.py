"""Lifecycle validation and evaluation against AWS's published rules and worked examples."""
from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.config import shipped_base_policy_text
from bot.core.cost import parse_manifest
from bot.core.lifecycle import evaluate, matches_tags, preview, validate_policy
from bot.core.models import Image
from bot.sample import blob, image, index

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
BASE = json.loads(shipped_base_policy_text())


def img(name: str, tags: str, days: float, pulled: float | None = None) -> Image:
    return Image(f"sha256:{name}", tuple(t for t in tags.split(",") if t), 100, NOW - timedelta(days=days),
                 None if pulled is None else NOW - timedelta(days=pulled))


def rule(priority: int, status: str, count_type: str = "imageCountMoreThan", number: int = 1, *,
         prefixes=None, patterns=None, action: str = "expire", **selection) -> dict:
    sel = {"tagStatus": status, "countType": count_type, "countNumber": number, **selection}
    if count_type != "imageCountMoreThan":
        sel["countUnit"] = "days"
    if prefixes is not None:
        sel["tagPrefixList"] = prefixes
    if patterns is not None:
        sel["tagPatternList"] = patterns
    act = {"type": action} | ({"targetStorageClass": "archive"} if action == "transition" else {})
    return {"rulePriority": priority, "selection": sel, "action": act}


def expired(images, *rules) -> list[str]:
    policy = {"rules": list(rules)}
    assert validate_policy(json.dumps(policy, indent=2).ljust(100))[1] == []
    decisions = evaluate(images, policy, NOW)
    return sorted(d.removeprefix("sha256:") for d, x in decisions.items() if x.action == "expire")


# -- AWS's worked examples (ECR user guide, "Examples of lifecycle policies") ----------------------

EX12 = [img("A", "beta-1,prod-1", 10), img("B", "beta-2,prod-2", 9), img("C", "beta-3", 8)]


def test_aws_example_1_higher_priority_selection_protects_from_lower_rules():
    assert expired(EX12, rule(1, "tagged", prefixes=["prod"]), rule(2, "tagged", prefixes=["beta"])) == ["A"]


def test_aws_example_2_same_images_rules_swapped():
    assert expired(EX12, rule(1, "tagged", prefixes=["beta"]), rule(2, "tagged", prefixes=["prod"])) == ["A", "B"]


def test_aws_example_3_every_pattern_must_match_some_tag():
    images = [img("A", "alpha-1", 12), img("B", "beta-1", 11), img("C", "alpha-2,beta-2", 10),
              img("D", "alpha-3", 4), img("E", "beta-3", 3), img("F", "alpha-4,beta-4", 2)]
    assert expired(images, rule(1, "tagged", "sinceImagePushed", 5, patterns=["alpha*", "beta*"])) == ["C"]


def test_aws_example_4_patterns_with_count():
    images = [img("A", "alpha-1,beta-1,gamma-1", 10), img("B", "alpha-2,beta-2", 9),
              img("C", "alpha-3,beta-3,gamma-2", 8)]
    assert expired(images, rule(1, "tagged", patterns=["alpha*", "beta*"])) == ["A", "B"]


def test_aws_example_5_any_counts_tagged_and_untagged():
    images = [img("A", "alpha-1", 4), img("B", "beta-1", 3), img("C", "", 2), img("D", "alpha-2", 1)]
    assert expired(images, rule(1, "any")) == ["A", "B", "C"]


def test_aws_example_6_three_rules():
    images = [img("A", "alpha-1,beta-1", 4), img("B", "", 3), img("C", "alpha-2", 2),
              img("D", "git-hash", 1), img("E", "", 0.5)]
    result = evaluate(images, {"rules": [rule(1, "tagged", patterns=["alpha*"]),
                                         rule(2, "untagged", "sinceImagePushed", 1), rule(3, "any")]}, NOW)
    assert {d.removeprefix("sha256:"): x.rule_priority for d, x in result.items()} == {"A": 1, "B": 2, "D": 3}


# -- the playbook's base policy on a crafted repository --------------------------------------------

def test_base_policy_on_a_crafted_repository():
    images = ([img(f"v{n}", f"v1.{n}.0", 100 - n) for n in range(12)]  # v1.0.0 oldest ... v1.11.0
              + [img("latest-old", "latest-2", 50), img("latest", "latest", 1)]
              + [img(f"u{n}", "", 40 - n) for n in range(3)]  # untagged leftovers
              + [img(f"sha{n}", f"git-{n:07x}", 30 - n) for n in range(25)])
    decisions = evaluate(images, BASE, NOW)
    by_rule = {p: sorted(d.removeprefix("sha256:") for d, x in decisions.items() if x.rule_priority == p)
               for p in (1, 2, 3, 4)}
    assert by_rule[1] == ["u0", "u1"]  # keep the newest untagged (u2)
    assert by_rule[2] == ["latest-old"]  # keep one image whose tag starts with "latest"
    assert by_rule[3] == ["v0", "v1", "v2"]  # keep the 9 newest v-tagged
    # rule 4 counts all 42 images, newest first, and may only expire the ones no rule above selected:
    # the sha-tagged images beyond the 20 newest overall
    order = sorted(images, key=lambda i: i.pushed_at, reverse=True)
    beyond_20 = {i.digest.removeprefix("sha256:") for i in order[20:]}
    assert by_rule[4] == sorted(n for n in beyond_20 if n.startswith("sha"))
    assert by_rule[4]  # the crafted repository does exercise rule 4


def test_manifest_list_children_are_not_expired_before_their_list():
    amd, arm = image([blob("a", 10)], blob("ca", 1)), image([blob("b", 20)], blob("cb", 1))
    multi = index([amd, arm], ("v1.0.0",))
    stale = image([blob("s", 30)], blob("cs", 1))
    manifests = {s.digest: parse_manifest(s.digest, s.media_type, s.manifest) for s in (amd, arm, multi, stale)}
    images = [Image(multi.digest, ("v1.0.0",), 20, NOW - timedelta(days=5)),
              Image(amd.digest, (), 10, NOW - timedelta(days=5)), Image(arm.digest, (), 20, NOW - timedelta(days=5)),
              Image(stale.digest, (), 30, NOW - timedelta(days=9))]
    result = preview(images, BASE, NOW, manifests)
    # untagged keep 1: without the protection the children would expire with the stale image
    assert [d.image.digest for d in result.decisions] == [stale.digest]
    assert result.bytes_freed == 31 and result.remaining_image_count == 3


def test_bytes_freed_counts_only_blobs_no_remaining_image_uses():
    shared = blob("base", 1000)
    old = image([shared, blob("old", 50)], blob("c1", 1))
    new = image([shared, blob("new", 70)], blob("c2", 2))
    manifests = {s.digest: parse_manifest(s.digest, s.media_type, s.manifest) for s in (old, new)}
    images = [Image(old.digest, (), 1051, NOW - timedelta(days=3)), Image(new.digest, (), 1072, NOW)]
    result = preview(images, {"rules": [rule(1, "untagged")]}, NOW, manifests)
    assert result.bytes_freed == 51


def test_since_image_pulled_falls_back_to_push_time_and_transition_is_not_expiry():
    images = [img("never-pulled", "a", 40), img("pulled-lately", "b", 40, pulled=2)]
    policy = {"rules": [rule(1, "any", "sinceImagePulled", 30, action="transition")]}
    decisions = evaluate(images, policy, NOW)
    assert {d: x.action for d, x in decisions.items()} == {"sha256:never-pulled": "transition"}


def test_archive_rules_only_see_archived_images():
    archived = Image("sha256:arch", ("v1",), 10, NOW - timedelta(days=300), status="ARCHIVED",
                     archived_at=NOW - timedelta(days=120))
    active = img("act", "v2", 300)
    policy = {"rules": [rule(1, "any", "sinceImageTransitioned", 90, storageClass="archive")]}
    assert set(evaluate([archived, active], policy, NOW)) == {"sha256:arch"}


# -- validation ------------------------------------------------------------------------------------

def text(policy) -> str:
    return json.dumps(policy, indent=2).ljust(100)


def test_the_base_policy_is_valid():
    policy, problems = validate_policy(shipped_base_policy_text())
    assert problems == [] and policy == BASE


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p["rules"][0].pop("rulePriority"), "rule #1 (no valid rulePriority): rulePriority must be"),
    (lambda p: p["rules"][1].update(rulePriority=1), "rulePriority 1 is used by 2 rules"),
    (lambda p: p["rules"][0].update(rulePriority=0), "rulePriority must be an integer >= 1"),
    (lambda p: p["rules"][0].update(rulePriority="1"), "rulePriority must be an integer"),
    (lambda p: p["rules"][3].update(rulePriority=0) or p["rules"][0].update(rulePriority=5),
     "rule 0: rulePriority must be an integer >= 1"),
    (lambda p: p["rules"][3].update(rulePriority=1) or p["rules"][0].update(rulePriority=7),
     "rule 1: a rule with tagStatus 'any' must have the highest rulePriority"),
    (lambda p: p["rules"][1]["selection"].pop("tagPrefixList"), "rule 2: selection.tagStatus 'tagged' needs"),
    (lambda p: p["rules"][1]["selection"].update(tagPatternList=["x*"]), "cannot have both"),
    (lambda p: p["rules"][0]["selection"].update(tagPrefixList=["v"]), "only allowed with tagStatus 'tagged'"),
    (lambda p: p["rules"][1]["selection"].update(tagPrefixList=["v"]), "rule 3: tag prefix 'v' is already used"),
    (lambda p: p["rules"][1]["selection"].update(tagPrefixList=[]), "non-empty list"),
    (lambda p: p["rules"][1]["selection"].update(tagStatus="untagged", tagPrefixList=None) or
     p["rules"][1]["selection"].pop("tagPrefixList"), "only one rule may select untagged"),
    (lambda p: p["rules"][0]["selection"].update(countNumber=0), "countNumber must be an integer >= 1"),
    (lambda p: p["rules"][0]["selection"].update(countNumber=1.5), "countNumber must be an integer"),
    (lambda p: p["rules"][0]["selection"].update(countUnit="days"), "countUnit is not allowed"),
    (lambda p: p["rules"][0]["selection"].update(countType="sinceImagePushed"), "countUnit must be 'days'"),
    (lambda p: p["rules"][0]["selection"].update(countType="sinceImagePushed", countUnit="weeks"),
     "countUnit must be 'days'"),
    (lambda p: p["rules"][0]["selection"].update(countType="newest"), "countType must be one of"),
    (lambda p: p["rules"][0]["selection"].update(tagStatus="some"), "tagStatus must be one of"),
    (lambda p: p["rules"][0]["selection"].update(storageClass="glacier"), "storageClass must be"),
    (lambda p: p["rules"][0]["selection"].update(storageClass="archive"), "only allowed with countType"),
    (lambda p: p["rules"][0]["selection"].update(countType="sinceImageTransitioned", countUnit="days"),
     "needs storageClass 'archive'"),
    (lambda p: p["rules"][0]["action"].update(type="delete"), "action.type must be expire or transition"),
    (lambda p: p["rules"][0]["action"].update(type="transition"), "needs targetStorageClass 'archive'"),
    (lambda p: p["rules"][0]["action"].update(targetStorageClass="archive"), "only allowed with action type"),
    (lambda p: p["rules"][0].pop("action"), "action is required"),
    (lambda p: p["rules"][0].pop("selection"), "selection is required"),
    (lambda p: p["rules"][0].update(extra=1), "unknown field 'extra'"),
    (lambda p: p["rules"][0]["selection"].update(tagPatternList=None), "only allowed with tagStatus"),
    (lambda p: p["rules"][1]["selection"].pop("tagPrefixList") and
     p["rules"][1]["selection"].update(tagPatternList=["*a*b*c*d*e"]), "has 5 wildcards"),
    (lambda p: p.update(version=2), "unknown top-level field 'version'"),
])
def test_each_broken_rule_is_reported_with_its_priority(mutate, expected):
    policy = copy.deepcopy(BASE)
    mutate(policy)
    _, problems = validate_policy(text(policy))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("raw, expected", [
    ("{" + " " * 120, "not valid JSON"),
    ("[" + " " * 100 + "]", "must be a JSON object"),
    (text({"rules": []}), "non-empty 'rules' list"),
    (text({"rules": "all"}), "non-empty 'rules' list"),
    ('{"rules": []}', "ECR accepts 100 to 30,720"),
    (text({"rules": [rule(n, "tagged", prefixes=[f"p{n}"]) for n in range(1, 52)]}), "51 rules"),
    (text({"rules": [dict(rule(1, "untagged"), description="x" * 31_000)]}), "31,"),
    (text({"rules": [rule(1, "tagged", patterns=["*a*b*c*d*"])]}), "has 5 wildcards"),
])
def test_bad_policy_text_gets_a_clear_message(raw, expected):
    _, problems = validate_policy(raw)
    assert any(expected in p for p in problems), problems


def test_huge_numbers_and_deep_nesting_do_not_crash():
    images = [img("A", "v1", 10)]
    policy = {"rules": [rule(1, "any", "sinceImagePushed", 10**9)]}
    assert validate_policy(text(policy))[1] == [] and evaluate(images, policy, NOW) == {}
    _, problems = validate_policy("[" * 100_000)
    assert "not valid JSON" in problems[-1]


def test_every_problem_is_reported_at_once():
    policy = {"rules": [rule(1, "any"), rule(1, "tagged"), {"rulePriority": 3}]}
    _, problems = validate_policy(text(policy))
    assert len(problems) >= 4


# -- properties ------------------------------------------------------------------------------------

TAGS = ["v1", "v2", "latest", "main-1", "beta", "prod"]
TAG_STATUS_ALL = ["tagged", "untagged", "any"]
images_strategy = st.lists(
    st.tuples(st.lists(st.sampled_from(TAGS), unique=True, max_size=3), st.integers(0, 400), st.booleans()),
    max_size=25, unique_by=lambda t: tuple(t[0]) or None).map(
    lambda specs: [Image(f"sha256:{n}", tuple(tags), 100 + n, NOW - timedelta(days=age, minutes=n),
                         NOW - timedelta(days=age / 2) if pulled else None) for n, (tags, age, pulled) in
                   enumerate(specs)])


@st.composite
def policies(draw):
    count = draw(st.integers(1, 6))
    priorities = draw(st.lists(st.integers(1, 100), min_size=count, max_size=count, unique=True))
    rules, used_prefixes, has_untagged = [], set(), False
    for priority in sorted(priorities):
        status = draw(st.sampled_from(["tagged", "untagged"] if priority != max(priorities) else TAG_STATUS_ALL))
        if status == "untagged":
            if has_untagged:
                status = "tagged"
            has_untagged = True
        kwargs = {}
        if status == "tagged":
            if draw(st.booleans()):
                free = [p for p in ["v", "lat", "main", "b", "pro"] if p not in used_prefixes]
                assume(free)
                prefixes = draw(st.lists(st.sampled_from(free), min_size=1, max_size=2, unique=True))
                used_prefixes.update(prefixes)
                kwargs["prefixes"] = prefixes
            else:
                kwargs["patterns"] = draw(st.lists(st.sampled_from(["v*", "*a*", "main-*", "*", "b*t*"]),
                                                   min_size=1, max_size=2, unique=True))
        count_type = draw(st.sampled_from(["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"]))
        if count_type == "sinceImagePulled":  # ECR takes a last-pull age only to archive, never to expire
            kwargs["action"] = "transition"
        rules.append(rule(priority, status, count_type, draw(st.integers(1, 40)), **kwargs))
    return {"rules": rules}


@settings(max_examples=300, deadline=None)
@given(images_strategy, policies())
def test_properties_of_evaluation(images, policy):
    assert validate_policy(text(policy))[1] == []
    decisions = evaluate(images, policy, NOW)
    rules = {r["rulePriority"]: r for r in policy["rules"]}
    for _digest, decision in decisions.items():
        acting = rules[decision.rule_priority]
        # an image acted on by a rule matches that rule's selection, and no higher rule's selection
        assert matches_tags(acting["selection"], decision.image.tags)
        for priority, other in rules.items():
            if priority < decision.rule_priority:
                assert not matches_tags(other["selection"], decision.image.tags)
    # at most one rule per image: decisions is keyed by digest, and each digest is an image of the input
    assert set(decisions) <= {i.digest for i in images}


@settings(max_examples=200, deadline=None)
@given(images_strategy, st.sampled_from(TAG_STATUS_ALL), st.integers(1, 30))
def test_a_count_rule_expires_more_as_its_count_falls(images, status, number):
    kwargs = {"patterns": ["*"]} if status == "tagged" else {}
    more = set(evaluate(images, {"rules": [rule(1, status, number=number, **kwargs)]}, NOW))
    fewer_kept = set(evaluate(images, {"rules": [rule(1, status, number=max(1, number - 1), **kwargs)]}, NOW))
    assert more <= fewer_kept


@settings(max_examples=300, deadline=None)
@given(policies(), st.data())
def test_valid_policies_validate_and_single_field_breakage_is_rejected(policy, data):
    assert validate_policy(text(policy))[1] == []
    broken = copy.deepcopy(policy)
    target = data.draw(st.sampled_from(broken["rules"]))
    breakage = data.draw(st.sampled_from([
        ("countNumber", 0), ("countNumber", "5"), ("tagStatus", "everything"), ("countType", "byAge"),
        ("storageClass", "cold"), ("countUnit", "hours"), ("rulePriority", -1), ("action", "erase"),
    ]))
    field, value = breakage
    if field == "rulePriority":
        target["rulePriority"] = value
    elif field == "action":
        target["action"]["type"] = value
    elif field == "countUnit":
        target["selection"]["countUnit"] = value
    else:
        target["selection"][field] = value
    assert validate_policy(text(broken))[1] != []
