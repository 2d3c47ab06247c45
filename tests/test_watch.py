"""`ecr-cost-bot watch` and the daily job: two scans of a known estate in moto, every figure computed again here from
the layer structure; the owners' direct messages through the Slack stand-in; creation templates against the proxy's
stand-in (moto has no template API); the pure comparisons on their own (partial scans, malformed limits)."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import load_settings
from bot.core.cost import GIB
from bot.core.inuse import protected
from bot.core.models import RepositoryCost, ScanProblem
from bot.core.watch import Blind, grew, parse_limit, stale_images
from bot.render.watch import owner_message
from bot.sample import MB, SampleRepository, blob, correct_moto, image
from bot.store import Store
from bot.wiring import build, build_slack, build_watch_job, cli_actor, scheduled_jobs
from tests.helpers.aws import ACCOUNT, NOW, ecr, load, run_cli
from tests.helpers.slack import check_limits
from tests.slack_standin import SlackStandIn

BASE = [blob("watch-base-os", 60 * MB), blob("watch-base-rt", 40 * MB)]
API_OWNER, NEW_OWNER, WEB_OWNER, ADMIN = "U0API0001", "U0NEW0001", "U0WEB0001", "U0ADMIN01"
STEP = "RUN pip install -r requirements.txt"
UNTAGGED_14 = json.dumps({"rules": [{"rulePriority": 1, "description": "untagged after 14 days", "selection": {
    "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
    "action": {"type": "expire"}}]})


def config_blob(name: str, steps: list[str]) -> tuple[tuple[str, int], bytes]:
    data = json.dumps({"architecture": "amd64", "os": "linux",
                       "history": [{"created_by": s} for s in steps]}).encode()
    return ("sha256:" + hashlib.sha256(data).hexdigest(), len(data)), data


def arn(name: str) -> str:
    return f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{name}"


def first_estate() -> list[SampleRepository]:
    api = SampleRepository("us-east-1", "api", [
        image(BASE + [blob("api-app-1", 20 * MB)], blob("api-cfg-1", 600), ("v1",), pushed_days_ago=10)],
        tags={"owner": API_OWNER, "ecr-cost-limit-usd": "0.02"})
    web = SampleRepository("us-east-1", "web", [
        image(BASE + [blob("web-app", 5 * MB)], blob("web-cfg", 500), ("v1",), pushed_days_ago=3)],
        tags={"owner": WEB_OWNER, "ecr-cost-limit-usd": "five dollars"})
    legacy = SampleRepository("us-east-1", "legacy", [
        image([blob("legacy-1", 30 * MB)], blob("legacy-cfg-1", 400), ("v1",), pushed_days_ago=300,
              pulled_days_ago=150),
        image([blob("legacy-2", 40 * MB)], blob("legacy-cfg-2", 400), ("v2",), pushed_days_ago=200),
        image([blob("legacy-3", 10 * MB)], blob("legacy-cfg-3", 400), ("v3",), pushed_days_ago=5)],
        policy=UNTAGGED_14)
    steady = SampleRepository("us-east-1", "steady", [
        image([blob("steady-1", 50 * MB)], blob("steady-cfg", 300), ("v1",), pushed_days_ago=40)],
        tags={"owner": API_OWNER})
    return [api, web, legacy, steady]


class Second:
    """What happens between the two scans: api gets a push with a big dependency layer (its config blob, with the
    Dockerfile steps, served through the proxy), two repositories are created, one of them without a policy."""

    def __init__(self):
        self.config, self.config_bytes = config_blob("api-2", ["/bin/sh -c #(nop) ADD file:os in / ",
                                                               "COPY rt / # buildkit", "COPY . /app # buildkit",
                                                               "/bin/sh -c pip install -r requirements.txt"])
        self.deps = blob("api-deps-2", 300 * MB)
        self.app = blob("api-app-2", 21 * MB)
        self.api_push = image(BASE + [self.app, self.deps], self.config, ("v2",), pushed_days_ago=0)
        self.fresh = SampleRepository("us-east-1", "fresh", [
            image([blob("fresh-1", 12 * MB)], blob("fresh-cfg", 300), ("v1",), pushed_days_ago=0.01)],
            tags={"owner": NEW_OWNER})
        self.fresh_ok = SampleRepository("us-east-1", "fresh-ok", [
            image([blob("fresh-ok-1", 12 * MB)], blob("fresh-ok-cfg", 300), ("v1",), pushed_days_ago=0.01)],
            tags={"owner": NEW_OWNER}, policy=UNTAGGED_14)

    def apply(self, proxy) -> None:
        client = ecr()
        client.put_image(repositoryName="api", imageManifest=self.api_push.manifest, imageTag="v2",
                         imageManifestMediaType=self.api_push.media_type, imageDigest=self.api_push.digest)
        # pushed after the first scan (moto keeps whole seconds)
        correct_moto(ACCOUNT, [SampleRepository("us-east-1", "api", [self.api_push])],
                     datetime.now(UTC) + timedelta(seconds=1))
        load([self.fresh, self.fresh_ok])
        proxy.blobs[self.config[0]] = self.config_bytes


def cloudtrail_events(*created: tuple[str, str]) -> dict:
    return {"Events": [{"EventId": f"e{n}", "EventName": "CreateRepository", "EventSource": "ecr.amazonaws.com",
                        "Username": who.rsplit("/", 1)[-1], "CloudTrailEvent": json.dumps({
                            "eventSource": "ecr.amazonaws.com", "userIdentity": {"arn": who},
                            "requestParameters": {"repositoryName": name}})}
                       for n, (name, who) in enumerate(created)]}


@pytest.fixture
def two_scans(aws, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_GROWTH_MIN_GB", "0.1")
    monkeypatch.setenv("ECR_COST_ADMINS", ADMIN)
    load(first_estate())
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    second = Second()
    second.apply(aws)
    aws.canned["LookupEvents"] = cloudtrail_events(("fresh", f"arn:aws:iam::{ACCOUNT}:user/alice"))
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    return second


def watch_json(capsys, *more: str) -> dict:
    code, out, err = run_cli(capsys, "watch", "--format", "json", *more)
    assert code == 0, err
    return json.loads(out)


def cost(byte_count: int) -> float:
    return round(byte_count / GIB * 0.10, 4)


def test_watch_reports_growth_limits_new_repositories_and_idle_policies(two_scans, aws, capsys):
    doc = watch_json(capsys)
    assert doc["partial"] is False and doc["previous_scan_at"] <= doc["generated_at"]  # to the second
    base = sum(s for _, s in BASE)
    before = base + 20 * MB + 600
    after = before + 21 * MB + 300 * MB + two_scans.config[1]

    [grown] = doc["growth"]  # steady, web and legacy did not grow; fresh is new, not grown
    assert grown == {
        "repository": "api", "account_id": ACCOUNT, "region": "us-east-1", "bytes_before": before,
        "bytes_after": after, "monthly_cost_usd_before": cost(before), "monthly_cost_usd_after": cost(after),
        "pushes": 1, "new_bytes": 21 * MB + 300 * MB + two_scans.config[1],
        "top_layers": [{"digest": two_scans.deps[0], "bytes": 300 * MB, "created_by": STEP},
                       {"digest": two_scans.app[0], "bytes": 21 * MB, "created_by": "COPY . /app"}]}

    assert doc["over_limit"] == [{"repository": "api", "account_id": ACCOUNT, "region": "us-east-1",
                                  "monthly_cost_usd": cost(after), "limit_usd": 0.02, "source": "tag"}]
    assert any("web" in w and "ecr-cost-limit-usd" in w and "five dollars" in w for w in doc["warnings"])

    [new] = doc["new_without_policy"]  # fresh-ok has a policy
    assert (new["repository"], new["created_by"], new["created_by_source"]) == (
        "fresh", f"arn:aws:iam::{ACCOUNT}:user/alice", "cloudtrail")
    assert new["created_at"] >= doc["previous_scan_at"]

    [idle] = doc["ineffective_policies"]  # legacy's policy expires untagged images; it has only stale tagged ones
    stale = 30 * MB + 400 + 40 * MB + 400
    assert idle == {"repository": "legacy", "account_id": ACCOUNT, "region": "us-east-1", "stale_images": 2,
                    "stale_bytes": stale, "stale_monthly_usd": cost(stale)}
    assert aws.calls["LookupEvents"] == 1  # one account and region with new repositories: one lookup

    code, out, _ = run_cli(capsys, "watch")
    assert code == 0
    assert "api costs $0.04 of $0.02/month: over its limit" in out
    assert "fresh is new" in out and "arn:aws:iam::123456789012:user/alice" in out
    assert re.search(rf"{two_scans.deps[0][7:19]} \d+ MB \({re.escape(STEP)}\)", out), out  # MB below 1 GB
    assert "legacy has a lifecycle policy that expires nothing while 2 images" in out

    # the base policy adopted through the bot keeps what its owners chose: no finding, no offer to adopt it again
    assert run_cli(capsys, "policy", "apply", "legacy", "--yes")[0] == 0
    assert run_cli(capsys, "scan")[0] == 0
    assert watch_json(capsys)["ineffective_policies"] == []


def test_without_cloudtrail_the_owner_tag_names_the_creator(two_scans, aws, capsys):
    aws.canned.pop("LookupEvents")
    aws.fail["LookupEvents"] = ("AccessDeniedException", "not authorized to perform: cloudtrail:LookupEvents")
    doc = watch_json(capsys)
    [new] = doc["new_without_policy"]
    assert (new["created_by"], new["created_by_source"]) == (NEW_OWNER, "owner tag")
    assert any("cloudtrail:LookupEvents" in w for w in doc["warnings"])


def test_one_scan_reports_only_limits_and_says_why(aws, capsys):
    repos = first_estate()
    repos[0].tags["ecr-cost-limit-usd"] = "$0.005"
    load(repos)
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    doc = watch_json(capsys)
    assert doc["previous_scan_at"] is None and "no previous scan" in doc["notes"][0]
    assert [o["repository"] for o in doc["over_limit"]] == ["api"] and doc["over_limit"][0]["limit_usd"] == 0.005
    assert doc["growth"] == doc["new_without_policy"] == doc["ineffective_policies"] == []


def test_limits_show_in_the_detail_and_the_weekly_report(two_scans, capsys):
    code, out, _ = run_cli(capsys, "repo", "api")
    assert code == 0 and "limit           $0.04 of $0.02/month (over)" in out
    code, out, _ = run_cli(capsys, "repo", "api", "--format", "json")
    assert json.loads(out)["limit_usd"] == 0.02
    code, out, _ = run_cli(capsys, "repo", "web")
    assert code == 0 and "limit tag malformed" in out  # a malformed tag: a line, never a crash
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    assert code == 0 and [o["repository"] for o in json.loads(out)["over_limit"]] == ["api"]
    code, out, _ = run_cli(capsys, "report")
    assert out.index("Over their limit (1)") < out.index("repository")  # listed before the top 10


# -- the owners' messages -------------------------------------------------------------------------------------------

@pytest.fixture
def slack_env(monkeypatch):
    standin = SlackStandIn()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-watch")
    monkeypatch.setenv("SLACK_API_URL", standin.api_url)
    monkeypatch.setenv("ECR_COST_REPORT_CHANNEL", "C0REPORT1")
    yield standin
    standin.stop()


def posted(standin: SlackStandIn) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for method, args in standin.calls:
        if method == "chat.postMessage":
            message = dict(args)
            if isinstance(message.get("blocks"), str):
                message["blocks"] = json.loads(message["blocks"])
            found.setdefault(message["channel"], []).append(message)
    return found


def test_post_sends_one_message_per_owner_once_per_period_and_not_while_snoozed(two_scans, slack_env, capsys):
    settings = load_settings()
    built = build(settings)
    try:
        built.application.snooze(built.application.find("fresh")[1], cli_actor("tester"))
    finally:
        built.close()
    code, _, err = run_cli(capsys, "watch", "--post")
    assert code == 0, err
    sent = posted(slack_env)
    assert set(sent) == {API_OWNER, ADMIN, "C0REPORT1"}  # fresh is snoozed; legacy has no owner: the admins
    [to_api] = sent[API_OWNER]
    text = json.dumps(to_api["blocks"])
    assert "over its limit" in text and "grew from" in text  # both findings about api, in one message
    buttons = {e["action_id"] for b in to_api["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert buttons == {"set_limit", "why_so_big", "snooze", "adopt_base_policy"}
    check_limits(to_api)
    assert "legacy" in json.dumps(sent[ADMIN]) and "expires nothing" in json.dumps(sent[ADMIN])
    [summary] = sent["C0REPORT1"]
    assert "over its monthly limit" in json.dumps(summary) and "$0.04 of $0.02/month" in json.dumps(summary)
    slack_env.reset()
    assert run_cli(capsys, "watch", "--post")[0] == 0
    assert posted(slack_env) == {}  # the same period: nothing is sent twice


def test_a_message_of_many_findings_holds_slacks_limits():
    rows = [RepositoryCost(f"team/{'x' * 200}-{n}", ACCOUNT, "us-east-1", arn(f"r{n}"), 1, 1, GIB, GIB, 0.1, None,
                           None, False, False, None, (API_OWNER,), {"ecr-cost-limit-usd": "0.01"}) for n in range(40)]
    from bot.core.watch import OverLimit

    items = [("over_limit", OverLimit(r, 0.01)) for r in rows[:15]]
    check_limits(owner_message(items, more=25))


def test_the_daily_job_runs_once_per_period_across_processes(two_scans, slack_env, capsys):
    settings = load_settings()
    first, second = build(settings), build(settings)  # two processes sharing the store
    try:
        jobs = []
        for built in (first, second):
            _, directory, client = build_slack(built)
            jobs.append(build_watch_job(built, client, directory))
            assert [j.id for j in scheduled_jobs(built, client, directory)] == ["weekly", "guard", "watch", "sweep"]
        outcomes = [None, None]
        threads = [threading.Thread(target=lambda i=i: outcomes.__setitem__(i, jobs[i].run())) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sum("already run" in o for o in outcomes) == 1, outcomes
        assert sum("findings" in o for o in outcomes) == 1, outcomes
        scans = Store(settings.db_path).db.execute("select count(*) from scans where status = 'complete'").fetchone()
        assert scans[0] == 3  # the job rescanned first, once
        assert len(posted(slack_env)[API_OWNER]) == 1
    finally:
        first.close()
        second.close()


# -- repository creation templates ----------------------------------------------------------------------------------

def test_templates_are_listed_applied_and_undone_with_a_backup(aws, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    ecr("eu-west-1").create_repository_creation_template(
        prefix="ROOT", description="team default", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE")
    code, out, _ = run_cli(capsys, "templates", "--format", "json")
    assert code == 0
    places = {p["region"]: p for p in json.loads(out)["places"]}
    assert places["us-east-1"]["templates"] == [] and places["eu-west-1"]["templates"][0]["prefix"] == "ROOT"
    assert set(places["eu-west-1"]["lifecycle_policy_for"].values()) == {None}

    code, _, err = run_cli(capsys, "templates", "apply")
    assert code == 1 and "--yes" in err
    code, out, err = run_cli(capsys, "templates", "apply", "--yes")
    assert code == 0, err
    assert "us-east-1: created" in out and "eu-west-1: updated" in out
    settings = load_settings()
    expected = protected(settings.base_policy)
    for region in ("us-east-1", "eu-west-1"):
        [root] = ecr(region).describe_repository_creation_templates(prefixes=["ROOT"])["repositoryCreationTemplates"]
        assert json.loads(root["lifecyclePolicy"]) == expected
        assert set(root["appliedFor"]) == {"PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH"}
    assert root["description"] == "team default" and root["imageTagMutability"] == "IMMUTABLE"  # kept
    code, out, _ = run_cli(capsys, "templates")
    assert "ROOT" in out and "none" not in out.splitlines()[2]
    assert run_cli(capsys, "templates", "apply", "--yes")[1].count("unchanged") == 2
    code, out, _ = run_cli(capsys, "decisions", "--format", "json")
    applied = [d for d in json.loads(out) if d["action"] == "template_applied"]
    assert len(applied) == 2 and all(d["user_id"] and d["source"] == "cli" for d in applied)

    code, out, err = run_cli(capsys, "templates", "rollback", "--yes")
    assert code == 0, err
    assert "us-east-1: deleted" in out and "eu-west-1: restored" in out
    assert ecr().describe_repository_creation_templates()["repositoryCreationTemplates"] == []
    [root] = ecr("eu-west-1").describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert (root["appliedFor"], root["description"], root.get("lifecyclePolicy")) == (
        ["REPLICATION"], "team default", None)


def test_templates_that_cannot_be_read_are_one_line_each(aws, capsys):
    aws.fail["DescribeRepositoryCreationTemplates"] = ("AccessDeniedException", "not authorized")
    code, out, err = run_cli(capsys, "templates")
    assert code == 0 and "ecr:DescribeRepositoryCreationTemplates" in out and "Traceback" not in out + err
    code, out, _ = run_cli(capsys, "templates", "apply", "--yes")
    assert code == 1 and "failed" in out and "Traceback" not in out


# -- the pure comparisons -------------------------------------------------------------------------------------------

def _row(name: str, region: str = "us-east-1", account: str = ACCOUNT, **changes) -> RepositoryCost:
    values = dict(repository=name, account_id=account, region=region, arn=arn(name), image_count=1,
                  tagged_image_count=1, stored_bytes=GIB, listed_bytes=GIB, monthly_cost_usd=0.1, last_pushed_at=None,
                  last_pulled_at=None, unused=False, has_lifecycle_policy=False, lifecycle_policy=None, owners=(),
                  tags={})
    return RepositoryCost(**(values | changes))


def test_a_partial_scan_makes_no_repository_grown_or_new():
    blind = Blind([ScanProblem(ACCOUNT, "eu-west-1", "cannot list repositories: AccessDenied")],
                  [ScanProblem("210987654321", "*", "cannot assume role"),
                   ScanProblem(ACCOUNT, "us-east-1", "cannot read repository x", "x")])
    assert _row("a", "eu-west-1") in blind and _row("b", account="210987654321") in blind and _row("x") in blind
    assert _row("a") not in blind


@pytest.mark.parametrize("value,limit", [("5", 5.0), (" $5.00 ", 5.0), ("1,250.5", 1250.5), (None, None)])
def test_limit_tags_are_read(value, limit):
    assert parse_limit(value) == (limit, None)


@pytest.mark.parametrize("value", ["five", "", "-3", "0", "nan", "inf", "5 USD"])
def test_a_malformed_limit_is_a_problem_not_a_crash(value):
    limit, problem = parse_limit(value)
    assert limit is None and "ecr-cost-limit-usd" in problem


def test_growth_needs_both_thresholds():
    assert grew(10 * GIB, 13 * GIB, 20, GIB)  # +30 %, +3 GB
    assert not grew(10 * GIB, 11.5 * GIB, 20, GIB)  # +15 %
    assert not grew(100 * MB, 500 * MB, 20, GIB)  # +400 % but under 1 GB


def test_a_child_of_a_list_still_in_use_is_not_stale():
    from bot.core.models import Image, Manifest

    old = NOW - timedelta(days=200)
    child = Image("sha256:c", (), 1, old)
    parent = Image("sha256:p", ("v1",), 1, old, last_pulled_at=NOW - timedelta(days=1))
    lone = Image("sha256:l", ("v0",), 1, old)
    manifests = {"sha256:p": Manifest("sha256:p", None, children=("sha256:c",))}
    assert [i.digest for i in stale_images([child, parent, lone], manifests, NOW)] == ["sha256:l"]


def test_bad_command_lines_are_one_line_and_change_nothing(aws, capsys):
    code, _, err = run_cli(capsys, "templates", "--yes")
    assert code == 2 and "--yes goes with" in err
    code, _, err = run_cli(capsys, "templates", "rollback")
    assert code == 1 and "add --yes" in err
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "watch", "--format", "xml")
    assert exited.value.code == 2
    code, _, err = run_cli(capsys, "watch", "--post")
    assert code == 2 and "SLACK_BOT_TOKEN" in err and "Traceback" not in err
    assert aws.templates.by_region == {}
