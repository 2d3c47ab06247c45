"""Nothing running is ever expired: in-use images from ECS, Lambda, Kubernetes and recent pulls, against moto's
server (runtimes in tests/runtimes_harness.py) and a local Kubernetes API stand-in; protection in every
adoption; the guard."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import load_settings
from bot.core.inuse import PIN_PREFIX, pin_tag
from bot.core.lifecycle import evaluate
from bot.core.models import Image
from bot.sample import SampleKubernetesApi, blob, image
from bot.wiring import components
from tests.helpers.aws import ACCOUNT, BASE, ecr, load, run_cli
from tests.helpers.inuse import api_repository
from tests.runtimes_harness import ecs_service, lambda_function, stop_everything, uri

NOW = datetime.now(UTC)


@pytest.fixture
def estate(in_use_estate):
    """The api repository running in ECS and Lambda (the in_use_estate fixture of tests/conftest.py)."""
    return in_use_estate


def in_use_json(capsys, *args) -> list[dict]:
    code, out, err = run_cli(capsys, "in-use", *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def kinds(items: list[dict]) -> dict[str, set[str]]:
    return {i["image_digest"]: {u["kind"] for u in i["used_by"]} for i in items}


def test_in_use_finds_ecs_tasks_services_lambda_and_recent_pulls(estate, capsys):
    assert run_cli(capsys, "scan")[0] == 0
    found = kinds(in_use_json(capsys, "api"))
    assert "ecs-task" in found[estate["old"]]  # the digest the task really runs, untagged now
    assert {"ecs-service", "ecs-task"} <= found[estate["new"]]  # what `prod` points to now
    assert found[estate["lambda"]] == {"lambda"}
    assert found[estate["pulled"]] == {"recent-pull"}
    code, out, err = run_cli(capsys, "in-use")
    assert code == 0 and "ecs-service prod/api" in out and "lambda thumbnails:$LATEST" in out


def test_preview_names_the_in_use_images_the_policy_as_written_would_expire(estate, capsys):
    assert run_cli(capsys, "scan")[0] == 0
    code, out, err = run_cli(capsys, "policy", "preview", "api", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    expiring_in_use = {i["image_digest"] for i in doc["in_use_expiring"]}
    assert estate["old"] in expiring_in_use  # untagged keep 1: the running digest would go
    assert estate["pulled"] in expiring_in_use  # v keep 9: an old release pulled 3 days ago would go
    assert {i["image_digest"] for i in doc["in_use"]} >= {estate["old"], estate["new"], estate["lambda"]}
    assert doc["in_use_partial"] is False
    assert doc["adopted_form"]["expiring_image_count"] == doc["expiring_image_count"] - len(expiring_in_use)
    code, out, _ = run_cli(capsys, "policy", "preview", "api")
    assert f"the policy as written would have expired {len(expiring_in_use)} of them" in out


def live_images(name: str = "api") -> list[Image]:
    details = ecr().describe_images(repositoryName=name)["imageDetails"]
    return [Image(d["imageDigest"], tuple(d.get("imageTags", ())), 0, d["imagePushedAt"]) for d in details]


def live_policy(name: str = "api") -> dict:
    return json.loads(ecr().get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])


def test_adoption_pins_every_in_use_image_and_the_policy_keeps_them_after_50_pushes(estate, capsys):
    assert run_cli(capsys, "scan")[0] == 0
    code, out, err = run_cli(capsys, "policy", "apply", "api", "--yes")
    assert code == 0, err
    assert "Images in use: " in out and "all kept" in out
    policy = live_policy()
    assert policy["rules"][0]["selection"]["tagPrefixList"] == [PIN_PREFIX]
    pinned = {i.digest for i in live_images() if any(t.startswith(PIN_PREFIX) for t in i.tags)}
    assert {estate["old"], estate["new"], estate["lambda"], estate["pulled"]} <= pinned
    for n in range(50):  # CI keeps pushing; nobody clicks again
        client = ecr()
        extra = image(BASE + [blob(f"push-{n}", 1000 + n)], blob(f"push-cfg-{n}", 100), (f"v2.{n}",))
        client.put_image(repositoryName="api", imageManifest=extra.manifest, imageManifestMediaType=extra.media_type,
                         imageDigest=extra.digest, imageTag=f"v2.{n}")
    expired = evaluate(live_images(), policy, datetime.now(UTC) + timedelta(days=1))
    assert not {d for d, decision in expired.items() if decision.action == "expire"} & pinned
    assert len([d for d in expired.values() if d.action == "expire"]) > 40  # the rest is still cleaned up

    # rollback restores the policy exactly and deletes no image: the pins stay
    before = {i.digest for i in live_images()}
    assert run_cli(capsys, "policy", "rollback", "api", "--yes")[0] == 0
    client = ecr()
    with pytest.raises(client.exceptions.LifecyclePolicyNotFoundException):
        client.get_lifecycle_policy(repositoryName="api")
    assert {i.digest for i in live_images()} == before


def test_a_runtime_that_cannot_be_read_makes_the_check_partial_and_says_so(estate, capsys, aws):
    assert run_cli(capsys, "scan")[0] == 0
    aws.fail["ListClusters"] = ("AccessDeniedException", "not authorized to perform: ecs:ListClusters")
    code, out, err = run_cli(capsys, "in-use", "--format", "json")
    assert code == 0 and "in-use check partial: ecs in" in err and "AccessDenied" in err
    assert all("ecs-task" not in u["kind"] for i in json.loads(out) for u in i["used_by"])
    code, out, err = run_cli(capsys, "policy", "preview", "api", "--format", "json")
    doc = json.loads(out)
    assert doc["in_use_partial"] is True and "ecs in" in doc["in_use_problems"][0]
    code, out, err = run_cli(capsys, "policy", "apply", "api", "--yes")
    assert code == 1 and "in-use check of api is partial" in err and "--accept-partial-in-use" in err
    client = ecr()
    with pytest.raises(client.exceptions.LifecyclePolicyNotFoundException):
        client.get_lifecycle_policy(repositoryName="api")  # nothing changed
    code, out, err = run_cli(capsys, "policy", "apply", "api", "--yes", "--accept-partial-in-use")
    assert code == 0 and "In-use check partial" in out  # adopted on request, and never silently
    doc = json.loads(run_cli(capsys, "guard", "--format", "json")[1])
    assert doc["partial"] is True and doc["released"] == []  # a partial check releases no pin


def test_task_definitions_are_read_once(estate, capsys, aws):
    assert run_cli(capsys, "scan")[0] == 0
    in_use_json(capsys)
    first = aws.calls["DescribeTaskDefinition"]
    assert first >= 1
    in_use_json(capsys)
    assert aws.calls["DescribeTaskDefinition"] == first


def test_guard_finds_at_risk_images_under_a_foreign_policy_then_protects_and_releases(estate, capsys):
    ecr().put_lifecycle_policy(repositoryName="api", lifecyclePolicyText=json.dumps(load_settings().base_policy))
    code, out, err = run_cli(capsys, "guard", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    at_risk = {i["image_digest"]: i for i in doc["at_risk"]}
    assert estate["old"] in at_risk and at_risk[estate["old"]]["rule_priority"] == 1
    assert {u["kind"] for u in at_risk[estate["old"]]["used_by"]} == {"ecs-task"}
    assert set(doc) == {"at_risk", "protected", "released", "partial", "errors"}

    with components(load_settings()) as built:  # the owner presses Protect in the guard's message
        from bot.gate import Actor
        _, row = built.application.find("api")
        change = built.application.protect(row, Actor("U0APIOWNR", "slack", names_me=lambda e: e == "U0APIOWNR"))
        assert change.decision is not None
    doc = json.loads(run_cli(capsys, "guard", "--format", "json")[1])
    assert doc["at_risk"] == [] and estate["old"] in {i["image_digest"] for i in doc["protected"]}

    stop_everything("prod")  # the service is removed: its old digest is no longer used
    doc = json.loads(run_cli(capsys, "guard", "--format", "json")[1])
    assert estate["old"] in {i["image_digest"] for i in doc["released"]}
    # untagged but for its pin: expired as the policy would
    assert estate["old"] not in {i.digest for i in live_images()}
    assert estate["lambda"] in {i.digest for i in live_images()}  # still in use: still there, still pinned


# -- Kubernetes, through a local stand-in of its API -----------------------------------------------

def pod(name: str, image_ref: str, image_id: str) -> dict:
    return {"metadata": {"name": name, "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": image_ref}]},
            "status": {"containerStatuses": [{"name": "app", "image": image_ref, "imageID": image_id}]}}


def deployment(name: str, image_ref: str) -> dict:
    return {"metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "app", "image": image_ref}]}}}}


def test_kubernetes_pods_and_workloads_scaled_to_zero_count(estate, capsys, monkeypatch, tmp_path):
    v3, v4 = (next(i.digest for i in estate["repo"].all_images() if i.tags == (t,)) for t in ("v1.3", "v1.4"))
    kube = SampleKubernetesApi({
        "/api/v1/pods": [pod("web-1", uri("api", "v1.3"), f"docker-pullable://{uri('api', digest=v3)}"),
                         pod("web-2", "nginx:1.25", "docker-pullable://nginx@sha256:" + "0" * 64)],
        "/apis/apps/v1/deployments": [deployment("batch", uri("api", "v1.4"))],
        "/apis/apps/v1/replicasets": [], "/apis/apps/v1/statefulsets": [], "/apis/apps/v1/daemonsets": [],
        "/apis/batch/v1/jobs": [], "/apis/batch/v1/cronjobs": [],
    })
    try:
        config = tmp_path / "kubeconfig"
        config.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "other",
            "clusters": [{"name": "c", "cluster": {"server": kube.url}}],
            "users": [{"name": "u", "user": {"token": "test-token"}}],
            "contexts": [{"name": "arn:aws:eks:us-east-1:123456789012:cluster/shop", "context": {"cluster": "c",
                                                                                               "user": "u"}},
                         {"name": "broken", "context": {"cluster": "missing", "user": "u"}}]}))
        monkeypatch.setenv("KUBECONFIG", str(config))
        monkeypatch.setenv("ECR_COST_KUBE_CONTEXTS", "arn:aws:eks:us-east-1:123456789012:cluster/shop,broken")
        assert run_cli(capsys, "scan")[0] == 0
        code, out, err = run_cli(capsys, "in-use", "api", "--format", "json")
        assert code == 0, err
        found = {i["image_digest"]: i["used_by"] for i in json.loads(out)}
        assert {u["name"] for u in found[v3]} >= {"arn:aws:eks:us-east-1:123456789012:cluster/shop/shop/pod/web-1"}
        assert found[v4][0]["kind"] == "kubernetes" and found[v4][0]["account_id"] == ACCOUNT
        assert "kubernetes in broken" in err  # an unreachable context is named: the check is partial
        assert any("continue=" in p for p in kube.paths)  # one item a page: the client followed `continue`
    finally:
        kube.stop()


def test_the_scan_warns_when_its_manifest_reads_may_update_pull_times(aws, capsys, monkeypatch, tmp_path):
    load([api_repository()])
    aws.canned["ListPullTimeUpdateExclusions"] = {"pullTimeUpdateExclusions": []}
    code, out, _ = run_cli(capsys, "scan", "--format", "json")
    [notice] = [w for w in json.loads(out)["warnings"] if "pull" in w["message"]]
    assert "register-pull-time-update-exclusion --principal-arn arn:aws:" in notice["message"]
    assert json.loads(out)["partial"] is False  # a notice, not a gap in the data
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "empty.db"))  # no manifest cached: they are read again
    principal = __import__("boto3").client("sts").get_caller_identity()["Arn"]
    aws.canned["ListPullTimeUpdateExclusions"] = {"pullTimeUpdateExclusions": [principal]}
    code, out, _ = run_cli(capsys, "scan", "--format", "json")
    assert not [w for w in json.loads(out)["warnings"] if "pull" in w["message"]]


def test_the_daily_guard_messages_owners_once_and_protect_is_owner_only(estate, capsys):
    from bot.render import blocks
    from bot.slack.actions import act
    from bot.wiring import build_guard_job, build_slack
    from tests.slack_standin import SlackStandIn

    ecr().put_lifecycle_policy(repositoryName="api", lifecyclePolicyText=json.dumps(load_settings().base_policy))
    standin = SlackStandIn()
    try:
        settings = load_settings({**__import__("os").environ, "SLACK_BOT_TOKEN": "xoxb-guard",
                                  "SLACK_API_URL": standin.api_url, "ECR_COST_ADMINS": "U0ADMIN01"})
        with components(settings) as built:
            _, directory, client = build_slack(built)
            job = build_guard_job(built, client, directory)
            outcome = job.run()
            assert "in-use images at risk" in outcome and "1 owner messages" in outcome
            [dm] = [a for m, a in standin.calls if m == "chat.postMessage"]
            assert dm["channel"] == "U0APIOWNR" and blocks.PROTECT in json.dumps(dm["blocks"])
            assert "already run" in job.run()  # exactly once per period
            arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/api"
            refused = act(built.application, directory, blocks.PROTECT, arn, "U0STRANGE", "click-1")
            assert "Only the owners" in refused.ephemeral and live_policy()["rules"][0]["rulePriority"] == 1 \
                and PIN_PREFIX not in json.dumps(live_policy())
            done = act(built.application, directory, blocks.PROTECT, arn, "U0APIOWNR", "click-2")
            assert done.replace is not None and PIN_PREFIX in json.dumps(live_policy())
            assert estate["old"] in {i.digest for i in live_images() if pin_tag(i.digest) in i.tags}
    finally:
        standin.stop()


def test_references_the_bot_cannot_read_make_the_check_partial_never_silent(estate, capsys):
    ecs_service("edge", "v6", "123456789012.dkr-ecr.us-east-1.on.aws/api:v1.5")  # dual-stack: read
    ecs_service("odd", "weird", "123456789012.dkr.ecr.us-east-1.amazonaws.com/API@not-a-digest")  # unreadable
    assert run_cli(capsys, "scan")[0] == 0
    code, out, err = run_cli(capsys, "in-use", "api", "--format", "json")
    v15 = next(i.digest for i in estate["repo"].all_images() if i.tags == ("v1.5",))
    assert v15 in {i["image_digest"] for i in json.loads(out)}
    assert "cannot read the image reference" in err and "not-a-digest" in err


def test_a_multi_arch_child_in_use_protects_its_list_and_siblings():
    from bot.core.inuse import ImageRef, Reference, Usage, resolve
    from bot.core.models import Manifest
    index, amd, arm = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64
    images = [Image(d, (), 0, NOW) for d in (index, amd, arm)]
    manifests = {index: Manifest(index, None, children=(amd, arm)), amd: Manifest(amd, None), arm: Manifest(arm, None)}
    used = resolve([Reference(ImageRef(ACCOUNT, "us-east-1", "x", None, amd), Usage("kubernetes", "p", "", ""))],
                   {(ACCOUNT, "us-east-1", "x"): images}, manifests)
    assert set(used.of(ACCOUNT, "us-east-1", "x")) == {index, amd, arm}


def test_a_teams_own_rule_with_the_pin_prefix_is_not_taken_for_the_bots():
    from bot.core.inuse import has_pin_rule, protected, unprotected
    theirs = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": [PIN_PREFIX],
                                                           "countType": "imageCountMoreThan", "countNumber": 1},
                         "action": {"type": "expire"}}]}
    assert not has_pin_rule(theirs)
    guarded = protected(theirs)
    assert len(guarded["rules"]) == 2 and unprotected(guarded) == {"rules": [{**theirs["rules"][0], "rulePriority": 2}]}


def test_a_large_policy_is_protected_compactly_within_ecrs_limit():
    from bot.adoption import compact
    from bot.core.inuse import protected
    from bot.core.lifecycle import validate_policy
    rules = [{"rulePriority": n, "description": "x" * 400, "selection": {
        "tagStatus": "tagged", "tagPrefixList": [f"team-{n}-"], "countType": "imageCountMoreThan", "countNumber": 5},
        "action": {"type": "expire"}} for n in range(1, 50)]
    text = json.dumps({"rules": rules}, separators=(",", ":"))
    assert 25_000 < len(text) < 30_720 and not validate_policy(text)[1]
    assert len(json.dumps(protected(json.loads(text)), indent=2)) > 30_720  # indented, it would not fit
    _, problems = validate_policy(compact(protected(json.loads(text))))
    assert problems == []


def test_slack_adopt_with_a_partial_check_asks_again_and_changes_nothing_until_confirmed(estate, capsys, aws):
    from bot.render import blocks
    from bot.slack.actions import act
    from bot.wiring import build_slack
    from tests.slack_standin import SlackStandIn

    assert run_cli(capsys, "scan")[0] == 0
    aws.fail["ListClusters"] = ("AccessDeniedException", "not authorized to perform: ecs:ListClusters")
    standin = SlackStandIn()
    try:
        settings = load_settings({**__import__("os").environ, "SLACK_BOT_TOKEN": "xoxb-unit",
                                  "SLACK_API_URL": standin.api_url})
        with components(settings) as built:
            _, directory, _ = build_slack(built)
            arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/api"
            asked = act(built.application, directory, blocks.ADOPT, arn, "U0APIOWNR", "click-a")
            text = json.dumps(asked.ephemeral_message)
            assert "Nothing was changed" in text and "ecs in" in text and blocks.ADOPT_DESPITE_PARTIAL in text
            client = ecr()
            with pytest.raises(client.exceptions.LifecyclePolicyNotFoundException):
                client.get_lifecycle_policy(repositoryName="api")
            done = act(built.application, directory, blocks.ADOPT_DESPITE_PARTIAL, arn, "U0APIOWNR", "click-b")
            assert done.replace is not None and PIN_PREFIX in json.dumps(live_policy())
            pinned = {i.digest for i in live_images() if pin_tag(i.digest) in i.tags}
            assert estate["lambda"] in pinned  # what can be seen is still kept
    finally:
        standin.stop()


def names(items: list[dict]) -> dict[str, set[str]]:
    return {i["image_digest"]: {u["name"] for u in i["used_by"] if u["kind"] == "lambda"} for i in items}


def test_lambda_aliases_run_the_versions_already_read_without_a_get_function_of_their_own(estate, capsys, aws):
    """An alias points at a version (and, weighted, a second one) that ListVersionsByFunction lists and GetFunction
    reads anyway: its images are those versions' images, one GetFunction per version, none per alias."""
    import boto3

    lambda_function("resize", uri("api", "v1.10"))  # version 1
    client = boto3.client("lambda", region_name="us-east-1")
    client.update_function_code(FunctionName="resize", ImageUri=uri("api", "v1.9"))
    client.publish_version(FunctionName="resize")  # version 2
    client.create_alias(FunctionName="resize", Name="live", FunctionVersion="1")
    client.create_alias(FunctionName="resize", Name="canary", FunctionVersion="2",
                        RoutingConfig={"AdditionalVersionWeights": {"1": 0.1}})
    aws.calls.clear()
    found = names(in_use_json(capsys))
    digests = {i.tags[0]: i.digest for i in estate["repo"].all_images() if i.tags}
    assert {"resize:1", "resize:live", "resize:canary"} <= found[digests["v1.10"]]  # canary sends 10% to 1
    assert {"resize:$LATEST", "resize:2", "resize:canary"} <= found[digests["v1.9"]]
    # (moto rewrites version 1's ImageUri on update_function_code, though not its ResolvedImageUri: only the
    # resolved digest tells the versions apart here)
    assert not {"resize:2", "resize:$LATEST"} & found[digests["v1.10"]]
    # thumbnails: $LATEST and 1; resize: $LATEST, 1 and 2
    assert aws.calls["GetFunction"] == 5 and aws.calls["ListAliases"] == 2


def test_service_revisions_are_described_twenty_at_a_time_across_services(estate, capsys, aws):
    """DescribeServiceRevisions takes up to 20 ARNs: 25 services in two clusters cost two calls, not 25 (moto has
    neither the API nor currentServiceRevisions: the proxy adds them, as ECS answers)."""
    images = {}
    for n in range(25):
        cluster, service = f"batch-{n % 2}", f"svc-{n}"
        ecs_service(cluster, service, uri("api", "candidate"))
        images[f"arn:aws:ecs:us-east-1:{ACCOUNT}:service-revision/{cluster}/{service}/1"] = \
            {"image": uri("api", "v1.3"), "imageDigest": estate["repo"].images[4 + 3].digest}

    def with_revisions(_request: dict, answer: dict) -> dict:
        for service in answer.get("services", []):
            cluster = service["clusterArn"].rsplit("/", 1)[-1]
            arn = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service-revision/{cluster}/{service['serviceName']}/1"
            if arn in images:
                service["currentServiceRevisions"] = [{"arn": arn, "requestedTaskCount": 1}]
        return answer

    asked: list[int] = []

    def revisions(request: dict) -> dict:
        asked.append(len(request["serviceRevisionArns"]))
        return {"serviceRevisions": [{"serviceRevisionArn": arn, "containerImages": [
            {"containerName": "app", **images[arn]}]} for arn in request["serviceRevisionArns"]], "failures": []}

    aws.amend["DescribeServices"] = with_revisions
    aws.answer["DescribeServiceRevisions"] = revisions
    items = in_use_json(capsys)
    assert sorted(asked) == [5, 20] and aws.calls["DescribeServiceRevisions"] == 2
    v13 = estate["repo"].images[4 + 3].digest
    services = {u["name"] for i in items if i["image_digest"] == v13
                for u in i["used_by"] if u["kind"] == "ecs-service"}
    assert services == {f"batch-{n % 2}/svc-{n}" for n in range(25)}
