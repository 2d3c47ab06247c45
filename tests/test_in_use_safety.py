"""No blind spot in "nothing running is ever expired" (issue 17), against moto's server through the proxy:
runtimes in every account the bot can enter (a central registry, ECS in a workload account entered by
AssumeRole), who may pull (repository and registry policies), Amazon Inspector as a further source, the final
safety check before every policy write (adopt, rollback, Protect; CLI --force, Slack "... anyway"), the bot's
keep rule always first, archive transitions as a risk, pin releases AWS refuses."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from bot.core.inuse import PIN_PREFIX, PIN_RULE_DESCRIPTION, Usage, harmed, pin_tag, protected
from bot.core.models import Image
from bot.core.pullers import Grants, blind_spots, grants
from bot.sample import SampleRepository, blob, image, moto_task_runs
from tests.helpers.aws import ACCOUNT, BASE, ecr, entered, load, role_arn, run_cli
from tests.runtimes_harness import pin_tasks_running, uri

WORKLOAD, STRANGER = "210987654321", "999988887777"
NOW = datetime.now(UTC)
OWNER = "U0CENTRAL"


def img(name: str, tags=(), days=10):
    return image(BASE + [blob(f"safety-{name}", 2_000_000)], blob(f"safety-cfg-{name}", 300), tags,
                 pushed_days_ago=days)


def central() -> SampleRepository:
    """Two untagged images (the base policy keeps one: old-1 would expire) and three releases."""
    return SampleRepository("us-east-1", "central", [img("old-1", (), 40), img("old-2", (), 20),
                                                     *[img(f"v{n}", (f"v1.{n}",), 30 - n) for n in range(3)]],
                            tags={"owner": OWNER})


def run_task(cluster: str, definition: str, digest: str, session: boto3.Session) -> str:
    """A task running ``digest`` in the account of ``session`` (its own EC2 instance, its own ECS)."""
    ecs, ec2 = session.client("ecs", region_name="us-east-1"), session.client("ec2", region_name="us-east-1")
    if not ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=json.dumps(
            {"instanceId": instance, "region": "us-east-1"}))
    task = ecs.run_task(cluster=cluster, taskDefinition=definition, count=1)["tasks"][0]
    moto_task_runs(WORKLOAD, "us-east-1", cluster, task["taskArn"], digest)  # what AWS reports; moto does not
    return task["taskArn"]


def digests(repo: SampleRepository) -> dict[str, str]:
    return {i.tags[0] if i.tags else f"untagged-{n}": i.digest for n, i in enumerate(repo.all_images())}


def live_images(name: str = "central") -> dict[str, tuple[str, ...]]:
    pages = ecr().get_paginator("describe_images").paginate(repositoryName=name)
    return {d["imageDigest"]: tuple(d.get("imageTags", ())) for p in pages for d in p["imageDetails"]}


def live_policy(name: str = "central") -> str | None:
    client = ecr()
    try:
        return client.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except client.exceptions.LifecyclePolicyNotFoundException:
        return None


def set_policy_in_moto(text: str, name: str = "central") -> None:
    """A policy moto's validation rejects (transition, archive) put as AWS would accept it."""
    from moto.ecr.models import ecr_backends

    ecr_backends[ACCOUNT]["us-east-1"].repositories[name].lifecycle_policy = text


def in_use(capsys, *args) -> dict[str, set[tuple[str, str]]]:
    code, out, err = run_cli(capsys, "in-use", *args, "--format", "json")
    assert code == 0, err
    return {i["image_digest"]: {(u["kind"], u["account_id"]) for u in i["used_by"]} for i in json.loads(out)}


def preview(capsys, *args) -> dict:
    code, out, err = run_cli(capsys, "policy", "preview", "central", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


# -- pure: who may pull, the keep rule first, the final check ---------------------------------------------

def statement(principal, action="ecr:BatchGetImage", condition=None, effect="Allow") -> str:
    doc = {"Effect": effect, "Principal": principal, "Action": action}
    if condition:
        doc["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [doc]})


@pytest.mark.parametrize("text, accounts, organisations, anyone", [
    (statement({"AWS": f"arn:aws:iam::{WORKLOAD}:root"}), {WORKLOAD}, set(), False),
    (statement({"AWS": [WORKLOAD, f"arn:aws:iam::{STRANGER}:role/deployer"]}, ["ecr:*"]), {WORKLOAD, STRANGER},
     set(), False),
    (statement("*", "ecr:BatchGet*", {"StringEquals": {"aws:PrincipalAccount": [STRANGER]}}), {STRANGER}, set(),
     False),
    (statement({"AWS": "*"}, "*", {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}), set(), {"o-abc123"}, False),
    (statement({"Service": "lambda.amazonaws.com"}, "ecr:BatchGetImage",
               {"StringLike": {"aws:sourceArn": f"arn:aws:lambda:us-east-1:{STRANGER}:function:*"}}), {STRANGER},
     set(), False),
    (statement("*"), set(), set(), True),
    (statement({"Service": "lambda.amazonaws.com"}), set(), set(), True),
    (statement("*", condition={"StringNotEquals": {"aws:PrincipalAccount": STRANGER}}), set(), set(), True),
    (statement({"AWS": STRANGER}, "ecr:PutImage"), set(), set(), False),  # may push, not pull
    # the repository's own account, and conditions that pass when their key is absent, narrow nothing
    (statement("*", condition={"StringEquals": {"aws:ResourceAccount": ACCOUNT}}), set(), set(), True),
    (statement("*", condition={"StringEqualsIfExists": {"aws:SourceAccount": STRANGER}}), set(), set(), True),
    (statement("*", condition={"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}}), set(), set(), True),
    (statement("*", condition={"ForAllValues:StringEquals": {"aws:PrincipalOrgPaths": ["o-abc/r-1/"]}}), set(),
     set(), True),
    (statement("*", effect="Deny"), set(), set(), False),
])
def test_who_may_pull_is_read_from_principals_and_narrowing_conditions(text, accounts, organisations, anyone):
    found = grants(text, "the repository policy of central")
    assert (set(found.accounts), set(found.organisations), bool(found.anyone)) == (accounts, organisations, anyone)
    assert not found.problems


def test_pullers_the_bot_cannot_read_are_named_and_an_unreadable_policy_is_partial():
    found = grants(statement({"AWS": [WORKLOAD, STRANGER]}), "x") | grants(
        statement("*", condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}), "y")
    problems = blind_spots(found, {ACCOUNT, WORKLOAD}, "o-abc123", {ACCOUNT, WORKLOAD, STRANGER})
    assert any(STRANGER in p and "cannot read its runtimes" in p for p in problems)
    assert not any(f"account {WORKLOAD}" in p for p in problems)
    assert any("o-abc123" in p and STRANGER in p for p in problems)
    assert blind_spots(grants(statement({"AWS": WORKLOAD}), "x"), {WORKLOAD}, None, ()) == []
    assert "cannot be read" in grants("{not json", "the repository policy of central").problems[0]
    registry = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": STRANGER}, "Action": "ecr:*",
                                          "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team-*"}]})
    assert grants(registry, "r", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/central") == Grants()
    assert grants(registry, "r", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team-a").accounts == {STRANGER}


def rule(priority, selection, action=None):
    return {"rulePriority": priority, "selection": selection, "action": action or {"type": "expire"}}


def test_the_keep_rule_is_always_put_first_wherever_it_was():
    keep = protected({"rules": [rule(1, {"tagStatus": "untagged", "countType": "imageCountMoreThan",
                                         "countNumber": 1})]})["rules"][0]
    copied = {"rules": [rule(1, {"tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan",
                                 "countNumber": 1}), {**keep, "rulePriority": 2}]}
    put = protected(copied)
    assert put["rules"][0]["description"] == PIN_RULE_DESCRIPTION and put["rules"][0]["rulePriority"] == 1
    assert [r["rulePriority"] for r in put["rules"]] == [1, 2] and put["rules"][1]["selection"]["countNumber"] == 1
    assert protected(put) == put  # idempotent
    pinned = Image("sha256:" + "a" * 64, (pin_tag("sha256:" + "a" * 64),), 1, NOW - timedelta(days=9))
    newer = Image("sha256:" + "b" * 64, ("v2",), 1, NOW - timedelta(days=1))
    used = {pinned.digest: [Usage("ecs-task", "prod/1", ACCOUNT, "us-east-1")]}
    assert harmed([pinned, newer], copied, used, NOW) != []  # as written: rule 1 expires the running image
    assert harmed([pinned, newer], put, used, NOW) == []


def test_an_archive_transition_of_a_running_image_is_harm():
    running = Image("sha256:" + "c" * 64, ("v1",), 1, NOW - timedelta(days=90))
    policy = {"rules": [rule(1, {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "days",
                                 "countNumber": 30}, {"type": "transition", "targetStorageClass": "archive"})]}
    [(image_found, priority, action)] = harmed([running], policy, {running.digest: []}, NOW)
    assert (image_found.digest, priority, action) == (running.digest, 1, "transition")


def test_the_pin_of_an_index_child_is_never_released_while_the_index_stays():
    from bot.core.inuse import plan_pins
    from bot.core.models import Manifest

    index, child = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    images = [Image(index, ("v1",), 1, NOW - timedelta(days=1)),
              Image(child, (pin_tag(child),), 1, NOW - timedelta(days=30))]  # its pin is its only tag
    policy = {"rules": [rule(1, {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                 "countNumber": 7})]}
    manifests = {index: Manifest(index, "application/vnd.oci.image.index.v1+json", children=(child,))}
    plan = plan_pins(images, set(), policy, NOW, manifests)
    assert plan.release == () and plan.keep_pinned == (child,)  # removing the pin would delete the index's child
    alone = plan_pins(images[1:], set(), policy, NOW, {})
    assert alone.release == (child,)  # without its index, the policy would expire it anyway: released


# -- a central registry, workloads elsewhere ---------------------------------------------------------------

@pytest.fixture
def registry(aws, monkeypatch):
    """The registry account (ECR_COST_ACCOUNTS names only it) with `central`; ECS in the workload account
    (entered by AssumeRole through ECR_COST_ROLE_ARNS) runs central's old untagged image."""
    repo = central()
    load([repo])
    names = digests(repo)
    pin_tasks_running()
    workload = entered(WORKLOAD)
    ecs = workload.client("ecs", region_name="us-east-1")
    ecs.create_cluster(clusterName="shop")
    definition = ecs.register_task_definition(family="shop-api", containerDefinitions=[
        {"name": "api", "image": uri("central", digest=names["untagged-0"]), "memory": 256}])[
        "taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="shop", serviceName="api", taskDefinition=definition, desiredCount=1)
    run_task("shop", definition, names["untagged-0"], workload)
    monkeypatch.setenv("ECR_COST_ACCOUNTS", ACCOUNT)
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", role_arn(WORKLOAD))
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    return names


def test_runtimes_are_read_in_workload_accounts_the_account_filter_leaves_out(registry, capsys):
    code, out, err = run_cli(capsys, "scan", "--format", "json")
    assert code == 0, err
    assert {r["account_id"] for r in json.loads(out)["repositories"]} == {ACCOUNT}  # the filter narrows the scan
    found = in_use(capsys, "central")
    assert {("ecs-task", WORKLOAD), ("ecs-service", WORKLOAD)} <= found[registry["untagged-0"]]
    doc = preview(capsys)
    assert doc["in_use_partial"] is False and registry["untagged-0"] in {
        i["image_digest"] for i in doc["in_use_expiring"]}
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--yes")
    assert code == 0, err
    assert "all kept" in out
    assert pin_tag(registry["untagged-0"]) in live_images()[registry["untagged-0"]]


def test_an_account_that_may_pull_but_cannot_be_read_makes_the_check_partial(registry, capsys, aws):
    assert run_cli(capsys, "scan")[0] == 0
    ecr().set_repository_policy(repositoryName="central", policyText=statement(
        {"AWS": [f"arn:aws:iam::{WORKLOAD}:root", f"arn:aws:iam::{STRANGER}:root"]}))
    doc = preview(capsys, "--refresh")
    assert doc["in_use_partial"] is True
    assert any(STRANGER in p and "may pull" in p for p in doc["in_use_problems"])
    assert not any(f"account {WORKLOAD}" in p for p in doc["in_use_problems"])  # its runtimes are read
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--yes")
    assert code == 1 and "partial" in err and STRANGER in err and live_policy() is None
    # "*" without a narrowing condition: anyone may pull
    ecr().set_repository_policy(repositoryName="central", policyText=statement("*"))
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--yes")
    assert code == 1 and "lets anyone pull" in err and live_policy() is None
    # the registry's policy counts too, and a policy the bot may not read is named
    ecr().delete_repository_policy(repositoryName="central")
    aws.canned["GetRegistryPolicy"] = {"registryId": ACCOUNT, "policyText": statement({"AWS": STRANGER}, "ecr:*")}
    assert any(STRANGER in p for p in preview(capsys, "--refresh")["in_use_problems"])
    del aws.canned["GetRegistryPolicy"]
    aws.fail["GetRepositoryPolicy"] = ("AccessDeniedException", "not authorized to perform: ecr:GetRepositoryPolicy")
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--yes")
    assert code == 1 and "cannot read who may pull central" in err and live_policy() is None
    del aws.fail["GetRepositoryPolicy"]
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--yes")
    assert code == 0, err  # every account that may pull is read: complete


def test_inspector_is_a_further_source_and_silently_none_when_off(registry, capsys, aws):
    assert run_cli(capsys, "scan")[0] == 0
    found = in_use(capsys, "central")
    assert all(kind != "inspector" for usages in found.values() for kind, _ in usages)  # off: no problem either
    assert preview(capsys)["in_use_partial"] is False
    arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/central/"
    recent, stale = (NOW - timedelta(hours=3)).timestamp(), (NOW - timedelta(days=5)).timestamp()
    aws.coverage = [{"resourceType": "AWS_ECR_CONTAINER_IMAGE", "accountId": STRANGER, "resourceId": arn + digest,
                     "scanType": "PACKAGE", "scanStatus": {"statusCode": "ACTIVE", "reason": "SUCCESSFUL"},
                     "resourceMetadata": {"ecrImage": {"inUseCount": 2, "lastInUseAt": at},
                                          "ecrRepository": {"name": "central"}}}
                    for digest, at in ((registry["v1.1"], recent), (registry["v1.0"], stale))]
    aws.coverage += [dict(aws.coverage[0], resourceType="AWS_EC2_INSTANCE", resourceId="i-0abc")] * 6  # paged
    found = in_use(capsys, "central")
    assert ("inspector", STRANGER) in found[registry["v1.1"]]
    assert registry["v1.0"] not in found  # last in use 5 days ago: not now
    aws.throttle_next = 2  # throttled: retried
    assert ("inspector", STRANGER) in in_use(capsys, "central")[registry["v1.1"]]


# -- the final safety check: rollback after pins, custom policies, Protect, the guard ------------------------

TEAM = json.dumps({"rules": [{"rulePriority": 1, "description": "keep 3 tagged", "selection": {
    "tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan", "countNumber": 3},
    "action": {"type": "expire"}}]}, indent=2)


def test_a_rollback_that_would_expire_a_running_image_refuses_unless_forced(registry, capsys):
    """Before adoption the team's "keep 3 tagged" kept every running image; adoption pins the untagged running
    one, so the restored policy would count 4 tagged images and expire v1.0, which an ECS task runs."""
    ecr().put_lifecycle_policy(repositoryName="central", lifecyclePolicyText=TEAM)
    workload = entered(WORKLOAD)
    definition = workload.client("ecs", region_name="us-east-1").register_task_definition(
        family="shop-v1", containerDefinitions=[{"name": "v1", "image": uri("central", "v1.0"), "memory": 256}])[
        "taskDefinition"]["taskDefinitionArn"]
    run_task("shop", definition, registry["v1.0"], workload)
    assert run_cli(capsys, "scan")[0] == 0
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--yes")
    assert code == 0, err
    adopted = live_policy()
    code, out, err = run_cli(capsys, "policy", "rollback", "central", "--yes")
    old = registry["untagged-0"][:19]  # pinned, so tagged: the oldest of 4 tagged images
    assert code == 1 and "would expire or archive 1 image(s) in use" in err and old in err and "--force" in err
    assert live_policy() == adopted  # nothing changed
    code, out, err = run_cli(capsys, "policy", "rollback", "central", "--yes", "--force")
    assert code == 0, err
    assert live_policy() == TEAM  # byte for byte
    assert "it will expire or archive 1 image(s) in use" in out and old in out


def test_a_policy_file_with_the_keep_rule_below_another_rule_is_adopted_with_it_first(registry, capsys, tmp_path):
    assert run_cli(capsys, "scan")[0] == 0
    assert run_cli(capsys, "policy", "apply", "central", "--yes")[0] == 0  # pins the running untagged image
    copied = json.loads(live_policy())
    keep = next(r for r in copied["rules"] if r.get("description") == PIN_RULE_DESCRIPTION)
    others = [r for r in copied["rules"] if r is not keep]
    hostile = {"rules": [rule(1, {"tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan",
                                  "countNumber": 1}), {**keep, "rulePriority": 2}]}
    path = tmp_path / "copied.json"
    path.write_text(json.dumps(hostile))
    assert others  # the base policy's rules were there
    code, out, err = run_cli(capsys, "policy", "apply", "central", "--policy", str(path), "--yes")
    assert code == 0, err
    put = json.loads(live_policy())
    assert put["rules"][0]["description"] == PIN_RULE_DESCRIPTION and put["rules"][0]["rulePriority"] == 1
    assert "all kept" in out
    assert harmed_now(put, registry) == []


def harmed_now(policy: dict, names: dict) -> list:
    client = ecr()
    pages = client.get_paginator("describe_images").paginate(repositoryName="central")
    images = [Image(d["imageDigest"], tuple(d.get("imageTags", ())), d["imageSizeInBytes"], d["imagePushedAt"])
              for p in pages for d in p["imageDetails"]]
    return harmed(images, policy, {names["untagged-0"]: []}, NOW)


def test_archive_transitions_of_running_images_are_at_risk_in_the_guard_and_the_preview(registry, capsys,
                                                                                         tmp_path):
    archive = json.dumps({"rules": [rule(1, {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                             "countUnit": "days", "countNumber": 30},
                                         {"type": "transition", "targetStorageClass": "archive"})]})
    set_policy_in_moto(archive)
    assert run_cli(capsys, "scan")[0] == 0
    code, out, err = run_cli(capsys, "guard", "--format", "json")
    assert code == 0, err
    [item] = json.loads(out)["at_risk"]
    assert (item["image_digest"], item["action"]) == (registry["untagged-0"], "transition")
    path = tmp_path / "archive.json"
    path.write_text(archive)
    doc = json.loads(run_cli(capsys, "policy", "preview", "central", "--policy", str(path), "--format",
                             "json")[1])
    assert registry["untagged-0"] in {i["image_digest"] for i in doc["in_use_expiring"]}


def test_a_pin_release_aws_refuses_is_an_error_never_a_release(registry, capsys, aws, monkeypatch):
    assert run_cli(capsys, "scan")[0] == 0
    assert run_cli(capsys, "policy", "apply", "central", "--yes")[0] == 0
    old = registry["untagged-0"]
    assert pin_tag(old) in live_images()[old]
    ecs = entered(WORKLOAD).client("ecs", region_name="us-east-1")
    for arn in ecs.list_tasks(cluster="shop")["taskArns"]:
        ecs.stop_task(cluster="shop", task=arn)
    ecs.delete_service(cluster="shop", service="api", force=True)
    from moto.ecs.models import ecs_backends  # moto still lists an INACTIVE service; AWS does not

    ecs_backends[WORKLOAD]["us-east-1"].services.pop("shop:api")
    for arn in ecs.list_task_definitions()["taskDefinitionArns"]:
        ecs.deregister_task_definition(taskDefinition=arn)
    aws.fail["BatchDeleteImage"] = ("ServerException", "internal error")
    code, out, err = run_cli(capsys, "guard", "--format", "json")
    doc = json.loads(out)
    assert doc["released"] == [] and any("could not be released" in e and old[:19] in e for e in doc["errors"]), doc
    assert pin_tag(old) in live_images()[old]  # still pinned, still there
    del aws.fail["BatchDeleteImage"]
    doc = json.loads(run_cli(capsys, "guard", "--format", "json")[1])
    assert [i["image_digest"] for i in doc["released"]] == [old] and old not in live_images()


def test_slack_rollback_refused_then_roll_back_anyway_names_the_images(registry, capsys):
    from bot.config import load_settings
    from bot.render import blocks
    from bot.slack.actions import act
    from bot.wiring import build_slack, components
    from tests.slack_standin import SlackStandIn

    ecr().put_lifecycle_policy(repositoryName="central", lifecyclePolicyText=TEAM)
    workload = entered(WORKLOAD)
    definition = workload.client("ecs", region_name="us-east-1").register_task_definition(
        family="shop-v1", containerDefinitions=[{"name": "v1", "image": uri("central", "v1.0"), "memory": 256}])[
        "taskDefinition"]["taskDefinitionArn"]
    run_task("shop", definition, registry["v1.0"], workload)
    assert run_cli(capsys, "scan")[0] == 0
    standin = SlackStandIn()
    try:
        settings = load_settings({**__import__("os").environ, "SLACK_BOT_TOKEN": "xoxb-unit",
                                  "SLACK_API_URL": standin.api_url})
        with components(settings) as built:
            _, directory, _ = build_slack(built)
            arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/central"
            assert act(built.application, directory, blocks.ADOPT, arn, OWNER, "c-1").replace is not None
            adopted = live_policy()
            asked = act(built.application, directory, blocks.ROLLBACK, arn, OWNER, "c-2")
            text = json.dumps(asked.ephemeral_message)
            old = registry["untagged-0"][:19]
            assert "Nothing was changed" in text and old in text and "Roll back anyway" in text
            assert blocks.ROLLBACK_DESPITE_IN_USE in text and live_policy() == adopted
            done = act(built.application, directory, blocks.ROLLBACK_DESPITE_IN_USE, arn, OWNER, "c-3")
            assert live_policy() == TEAM and old in (done.ephemeral or "")
    finally:
        standin.stop()


def test_slack_adopt_refused_by_the_final_check_then_adopt_anyway(registry, capsys, monkeypatch):
    """An in-use image whose pin cannot be added (moto: an image ECR cannot read back) meets the policy unpinned:
    the final check names it; Adopt anyway puts the policy."""
    from bot.aws.registry_writer import RegistryWriter
    from bot.config import load_settings
    from bot.render import blocks
    from bot.slack.actions import act
    from bot.wiring import build_slack, components
    from tests.slack_standin import SlackStandIn

    assert run_cli(capsys, "scan")[0] == 0
    monkeypatch.setattr(RegistryWriter, "add_tag", lambda self, ref, digest, tag: None)  # AWS "succeeds", no pin
    standin = SlackStandIn()
    try:
        settings = load_settings({**__import__("os").environ, "SLACK_BOT_TOKEN": "xoxb-unit",
                                  "SLACK_API_URL": standin.api_url})
        with components(settings) as built:
            _, directory, _ = build_slack(built)
            arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/central"
            asked = act(built.application, directory, blocks.ADOPT, arn, OWNER, "c-1")
            text = json.dumps(asked.ephemeral_message)
            assert "Nothing was changed" in text and blocks.ADOPT_DESPITE_IN_USE in text and "Adopt anyway" in text
            assert registry["untagged-0"][:19] in text and live_policy() is None
            done = act(built.application, directory, blocks.ADOPT_DESPITE_IN_USE, arn, OWNER, "c-2")
            assert PIN_PREFIX in live_policy() and "NOT kept" in (done.ephemeral or "")
    finally:
        standin.stop()


def test_an_image_running_in_a_region_that_is_not_scanned_is_in_use(aws, capsys, monkeypatch):
    """ECR_COST_REGIONS names the registry's region only; a task in us-west-2 of the same account runs one of its
    images (pulling across regions needs no repository policy): it is in use, and adopting keeps it."""
    from tests.runtimes_harness import ecs_service, run_task

    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    repo = SampleRepository("us-east-1", "central", [
        image(BASE + [blob(f"c-{n}", 1000 + n)], blob(f"c-cfg-{n}", 300), (f"v{n}",) if n % 2 else (),
              pushed_days_ago=40 - n) for n in range(8)], tags={"owner": "U0CENTRAL"})
    load([repo])
    old = next(i.digest for i in repo.all_images() if not i.tags)  # the oldest untagged image
    pin_tasks_running()
    definition = ecs_service("west", "api", uri("central", digest=old), region="us-west-2")
    run_task("west", definition, old, region="us-west-2")
    assert run_cli(capsys, "scan")[0] == 0
    code, out, err = run_cli(capsys, "in-use", "central", "--format", "json")
    assert code == 0 and old in {i["image_digest"] for i in json.loads(out)}, err
    assert run_cli(capsys, "policy", "apply", "central", "--yes")[0] == 0
    live = {d["imageDigest"]: d.get("imageTags", []) for d in ecr().describe_images(repositoryName="central")[
        "imageDetails"]}
    assert any(t.startswith("ecr-cost-keep") for t in live[old])  # pinned: the adopted policy keeps it
    monkeypatch.setenv("ECR_COST_RUNTIME_REGIONS", "us-east-1")  # the operator says workloads run only there
    code, out, _ = run_cli(capsys, "in-use", "central", "--format", "json")
    assert old not in {i["image_digest"] for i in json.loads(out)}
