"""A whole AWS Organization: accounts discovered from Organizations (ACTIVE only), each entered through one
role name, every enabled region, filters, accounts in the product, and what could not be read named.
Against moto's server (Organizations, STS role assumption into each account: moto keeps each account's ECR
apart) through the fault proxy; the CloudFormation templates checked with cfn-lint."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from bot.sample import MB, SampleRepository, blob, image
from tests.helpers.aws import ACCOUNT, ROLE, entered, load, role_arn, run_cli

ROOT = Path(__file__).resolve().parent.parent
def repo(name: str, size_mb: int, region: str = "us-east-1") -> SampleRepository:
    return SampleRepository(region, name, [image([blob(f"{name}-layer", size_mb * MB)], blob(f"{name}-cfg", 500),
                                                 ("v1",), pushed_days_ago=3)], tags={"owner": "U0OWNER01"})


@pytest.fixture
def organisation(aws, monkeypatch):
    """The bot's (management) account with one repository; team-a (2 repositories, one in eu-west-1), team-b,
    locked (its role will be refused) and closed (SUSPENDED) created in Organizations."""
    org = boto3.client("organizations", region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    ids = {name: org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]["AccountId"]
           for name in ("team-a", "team-b", "locked", "closed")}
    load([repo("mgmt-tools", 3)])
    for name, repos in (("team-a", [repo("a-api", 10), repo("a-eu", 7, "eu-west-1")]),
                        ("team-b", [repo("b-web", 5)]), ("locked", [repo("l-secret", 9)]),
                        ("closed", [repo("c-old", 4)])):
        load(repos, account=ids[name], session=entered(ids[name]))
    org.close_account(AccountId=ids["closed"])
    monkeypatch.setenv("ECR_COST_ORG_ROLE_NAME", ROLE)
    return ids


def scan(capsys, *args) -> dict:
    code, out, err = run_cli(capsys, "scan", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def test_every_active_account_is_scanned_and_one_that_cannot_be_entered_is_named(organisation, aws, capsys,
                                                                                monkeypatch, caplog):
    aws.deny_roles.add(role_arn(organisation["locked"]))
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    caplog.set_level(logging.INFO, logger="bot.aws")
    result = scan(capsys)
    assert "scan finished: 4 of 4 accounts done, 3 repositories read" in caplog.text  # locked: done, named
    rows = {r["repository"]: r for r in result["repositories"]}
    assert set(rows) == {"mgmt-tools", "a-api", "b-web"}  # closed is SUSPENDED; locked refused its role
    assert rows["a-api"]["account_id"] == organisation["team-a"] and rows["a-api"]["account_name"] == "team-a"
    assert rows["mgmt-tools"]["account_id"] == ACCOUNT
    assert result["partial"] is True
    [error] = result["errors"]
    assert error["account_id"] == organisation["locked"] and role_arn(organisation["locked"]) in error["message"]
    accounts = {a["account_id"]: a for a in result["summary"]["accounts"]}
    assert set(accounts) == {ACCOUNT, organisation["team-a"], organisation["team-b"]}
    assert accounts[organisation["team-a"]]["account_name"] == "team-a"
    assert accounts[organisation["team-a"]]["repository_count"] == 1
    for account_id, totals in accounts.items():  # each account's totals are its rows' sums
        mine = [r for r in result["repositories"] if r["account_id"] == account_id]
        assert totals["stored_bytes"] == sum(r["stored_bytes"] for r in mine)
        assert totals["monthly_cost_usd"] == pytest.approx(sum(r["monthly_cost_usd"] for r in mine), abs=1e-3)
    assert [a["account_id"] for a in result["summary"]["accounts"]][0] == organisation["team-a"]  # costliest first
    assert aws.calls["ListAccounts"] >= 1


def test_all_regions_are_those_each_account_has_enabled_and_a_refusing_region_is_named(organisation, aws, capsys,
                                                                                     monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "all")
    aws.deny_regions.add("ap-southeast-2")
    aws.deny_roles.add(role_arn(organisation["locked"]))
    result = scan(capsys)
    assert {r["repository"] for r in result["repositories"]} == {"mgmt-tools", "a-api", "a-eu", "b-web"}
    a_eu = next(r for r in result["repositories"] if r["repository"] == "a-eu")
    assert a_eu["region"] == "eu-west-1" and a_eu["account_name"] == "team-a"
    refused = {(e["account_id"], e["region"]) for e in result["errors"]}
    # every account entered names the refusing region; the locked account is named once, for its role
    assert {(a, "ap-southeast-2") for a in (ACCOUNT, organisation["team-a"], organisation["team-b"])} <= refused
    assert (organisation["locked"], "*") in refused
    assert aws.calls["DescribeRegions"] == 3  # once per account entered


def test_accounts_filters_keep_or_leave_out_accounts_and_scan_narrows_to_one(organisation, aws, capsys,
                                                                             monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    monkeypatch.setenv("ECR_COST_ACCOUNTS", f"{organisation['team-a']},{organisation['team-b']}")
    assert {r["repository"] for r in scan(capsys)["repositories"]} == {"a-api", "b-web"}
    monkeypatch.delenv("ECR_COST_ACCOUNTS")
    monkeypatch.setenv("ECR_COST_EXCLUDE_ACCOUNTS", f"{organisation['team-b']},{organisation['locked']}")
    result = scan(capsys)
    assert {r["repository"] for r in result["repositories"]} == {"mgmt-tools", "a-api"}
    assert result["partial"] is False
    described = aws.calls["DescribeRepositories"]
    code, _, err = run_cli(capsys, "scan", "--account", "999999999999")  # a typo: said first, nothing scanned
    assert code == 1 and "999999999999" in err and "Traceback" not in err
    assert aws.calls["DescribeRepositories"] == described


def test_scan_account_reads_that_account_alone_and_never_stands_in_for_the_estate(organisation, aws, capsys,
                                                                                 monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    estate = scan(capsys)
    assert {r["repository"] for r in estate["repositories"]} == {"mgmt-tools", "a-api", "a-eu", "b-web", "l-secret"}
    listed: list[str] = []  # the account of every repository ECR listed, and of every image list read
    aws.amend["DescribeRepositories"] = lambda params, answer: listed.extend(
        r["registryId"] for r in answer["repositories"]) or answer
    aws.amend["DescribeImages"] = lambda params, answer: listed.append(params["registryId"]) or answer
    before = {op: aws.calls[op] for op in ("DescribeRepositories", "DescribeImages")}
    narrowed = scan(capsys, "--account", "team-a")  # its name in the organisation: every region configured
    assert {(r["repository"], r["region"]) for r in narrowed["repositories"]} == {("a-api", "us-east-1"),
                                                                                  ("a-eu", "eu-west-1")}
    assert narrowed["errors"] == [] and narrowed["partial"] is False
    assert set(listed) == {organisation["team-a"]}  # no other account's repositories listed or read
    assert aws.calls["DescribeRepositories"] - before["DescribeRepositories"] == 2  # team-a's two regions
    assert aws.calls["DescribeImages"] - before["DescribeImages"] == 2
    # stored apart: the report, `repo` and the scan a report reuses are still the full scan's
    code, out, err = run_cli(capsys, "report", "--format", "json", "--quiet")
    assert code == 0, err
    assert "using the scan of" in err and aws.calls["DescribeImages"] - before["DescribeImages"] == 2
    assert json.loads(out)["summary"]["repository_count"] == 5
    code, out, _ = run_cli(capsys, "repo", "b-web", "--format", "json")  # another account's: from the full scan
    assert code == 0 and json.loads(out)["account_id"] == organisation["team-b"]


def test_role_arns_keep_working_beside_the_organisation_and_without_one(aws, capsys, monkeypatch):
    """No organisation (AWSOrganizationsNotInUseException): the bot's account and ECR_COST_ROLE_ARNS are still
    scanned, and the report says the organisation could not be listed."""
    other = "210987654321"
    load([repo("mgmt-tools", 3)])
    load([repo("x-svc", 2)], account=other, session=entered(other))
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", role_arn(other))
    monkeypatch.setenv("ECR_COST_ORG_ROLE_NAME", ROLE)
    # moto answers an empty list where AWS refuses: the proxy answers as AWS does
    aws.fail["ListAccounts"] = ("AWSOrganizationsNotInUseException",
                                "Your account is not a member of an organization.")
    result = scan(capsys)
    assert {r["repository"] for r in result["repositories"]} == {"mgmt-tools", "x-svc"}
    [error] = result["errors"]
    assert "organizations:ListAccounts" in error["message"] and "AWSOrganizationsNotInUseException" in error["message"]


def test_slack_and_the_report_show_the_top_accounts(organisation, aws, capsys, monkeypatch):
    from bot.config import load_settings
    from bot.slack.commands import answer
    from bot.wiring import build

    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    report = json.loads(out)
    assert [a["account_name"] for a in report["accounts"]][:3] == ["team-a", "locked", "team-b"]  # costliest first
    built = build(load_settings())
    try:
        ranking = json.dumps(answer(built.application, ""))
        assert "team-a" in ranking  # the top accounts line
        narrowed = json.dumps(answer(built.application, "account team-b"))
        assert "b-web" in narrowed and "a-api" not in narrowed
        by_id = json.dumps(answer(built.application, f"account {organisation['team-a']}"))
        assert "a-api" in by_id and "b-web" not in by_id
        assert "No account" in json.dumps(answer(built.application, "account nobody"))
    finally:
        built.close()


def test_the_deploy_templates_pass_cfn_lint():
    templates = sorted(str(p) for p in (ROOT / "deploy" / "cloudformation").glob("*.yaml"))
    assert len(templates) == 2
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the test extra's console script, beside this Python
    done = subprocess.run([str(cfn_lint), *templates], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_account_reached_twice_is_scanned_once_and_the_regions_once(aws, capsys, monkeypatch):
    """Two roles into one account, a role into the bot's own account, a region listed twice: each repository
    once (a review found them counted twice, and the progress count crashing)."""
    other = "210987654321"
    load([repo("mgmt-tools", 3)])
    load([repo("x-svc", 2)], account=other, session=entered(other))
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,us-east-1")
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", f"{role_arn(other)},arn:aws:iam::{other}:role/Another,"
                                             f"{role_arn(ACCOUNT)}")
    result = scan(capsys)
    assert sorted(r["repository"] for r in result["repositories"]) == ["mgmt-tools", "x-svc"]


def test_regions_that_cannot_be_listed_leave_the_home_region_read_and_say_so(organisation, aws, capsys,
                                                                             monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "all")
    aws.fail["DescribeRegions"] = ("UnauthorizedOperation", "not authorized to perform ec2:DescribeRegions")
    result = scan(capsys)
    # every account, the bot's own included, is still entered and its home region read
    assert {r["repository"] for r in result["repositories"]} == {"mgmt-tools", "a-api", "b-web", "l-secret"}
    named = [e for e in result["errors"] if "ec2:DescribeRegions" in e["message"]]
    assert len(named) == 4 and all("only us-east-1 was read" in e["message"] for e in named)


def test_wanted_accounts_never_found_are_named_and_left_out_ones_are_never_changed(organisation, aws, capsys,
                                                                                   monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    monkeypatch.setenv("ECR_COST_ACCOUNTS", f"{organisation['team-a']},111122223333,{organisation['closed']}")
    result = scan(capsys)
    assert [r["repository"] for r in result["repositories"]] == ["a-api"]
    assert {e["account_id"] for e in result["errors"]} == {"111122223333", organisation["closed"]}
    # the scan stored a-api; then team-a is left out: a change there is refused, and nothing is written
    monkeypatch.delenv("ECR_COST_ACCOUNTS")
    monkeypatch.setenv("ECR_COST_EXCLUDE_ACCOUNTS", organisation["team-a"])
    code, _, err = run_cli(capsys, "policy", "apply", "a-api", "--yes")
    assert code == 1 and "left out by ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS" in err
    client = entered(organisation["team-a"]).client("ecr")
    with pytest.raises(client.exceptions.LifecyclePolicyNotFoundException):
        client.get_lifecycle_policy(repositoryName="a-api")


def test_an_account_that_could_not_be_read_can_still_be_looked_at(organisation, aws, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1")
    aws.deny_roles.add(role_arn(organisation["locked"]))
    # scanned alone, an account that cannot be entered is a failure that names it and its role
    code, _, err = run_cli(capsys, "scan", "--format", "json", "--account", organisation["locked"])
    assert code == 1 and organisation["locked"] in err and role_arn(organisation["locked"]) in err
    assert "Traceback" not in err


def test_entering_an_account_costs_one_assume_role_and_the_pull_time_check_one_call_a_region(organisation, aws,
                                                                                           capsys, monkeypatch,
                                                                                           tmp_path):
    """A role names its account and is the principal: no GetCallerIdentity per account. The pull-time exclusion
    list is asked once per account and region read; an endpoint that lacks the API is asked once per scan."""
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    aws.calls.clear()  # the fixture's own AssumeRoles, loading each account
    scan(capsys)  # moto lacks ListPullTimeUpdateExclusions (a server error): asked once, never again
    assert aws.calls["ListPullTimeUpdateExclusions"] == 1
    assert aws.calls["GetCallerIdentity"] == 1  # the bot's own; team-a, team-b and locked by their roles
    assert aws.calls["AssumeRole"] == 3  # team-a, team-b, locked (closed is SUSPENDED)

    aws.reset()
    aws.canned["ListPullTimeUpdateExclusions"] = {"pullTimeUpdateExclusions": []}
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "answered.db"))  # no manifest cached: all read again
    result = scan(capsys)
    # where manifests were read: mgmt-tools, a-api, b-web, l-secret in us-east-1; a-eu in eu-west-1 (team-a)
    assert aws.calls["ListPullTimeUpdateExclusions"] == 5
    named = sorted(w["message"].split("--principal-arn ")[1].split()[0]
                   for w in result["warnings"] if "register-pull-time-update-exclusion" in w["message"])
    assert named.count(role_arn(organisation["team-a"])) == 2 and role_arn(organisation["team-b"]) in named
    assert aws.calls["GetCallerIdentity"] == 1

    # AWS failing once (a 503) is not an endpoint lacking the API: the region is asked again before its next
    # manifest read, and the other accounts and regions are asked as before
    aws.reset()
    aws.canned["ListPullTimeUpdateExclusions"] = {"pullTimeUpdateExclusions": []}
    aws.unavailable_next["ListPullTimeUpdateExclusions"] = 1
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "once.db"))
    result = scan(capsys)
    # the failed one and the 4 others: each account and region here holds one repository, read at once
    assert aws.calls["ListPullTimeUpdateExclusions"] == 5
    again = [w for w in result["warnings"] if "register-pull-time-update-exclusion" in w["message"]]
    assert len(again) == len(named) - 1  # every account and region but the one AWS failed once



def test_an_organisation_scan_holds_few_region_clients_at_once():
    """Memory follows the work in flight, not the organisation: a listed region keeps its client until its
    repositories are read. Across 300 accounts of one repository each, at most `workers` regions are being listed or
    wait to be read, beside the 2 x `workers` reads in flight (before, waiting regions were bounded only by their
    repositories: 22 regions at once here, 90 clients in a 300-account scan on moto where now 34)."""
    import threading
    import time

    from bot.aws.accounts import Account
    from bot.aws.scan import EstateScan
    from bot.core.models import RepositoryInventory, RepositoryRef

    workers, count = 4, 300
    lock, live, most = threading.Lock(), [0], [0]

    class Accounts:
        def plan(self, account=None):
            return None, [(f"arn:aws:iam::{n:012d}:role/r", f"{n:012d}") for n in range(count)], [], []

        def enter(self, arn):
            return Account(arn.split(":")[4], None, ("us-east-1",)), None  # type: ignore[arg-type]

    class Reader:
        def list_repositories(self, target, session):
            with lock:
                live[0] += 1
                most[0] = max(most[0], live[0])
            time.sleep(0.001)  # one request (DescribeRepositories) where a read makes four
            target.client = object()
            return [(RepositoryRef(target.account_id, target.region, "svc", f"arn:{target.account_id}"), None)]

        def read_repository(self, client, ref, created_at):
            time.sleep(0.004)
            with lock:
                live[0] -= 1
            return RepositoryInventory(ref, None, {}, None, [], {})

    found = list(EstateScan(Accounts(), Reader(), workers).run())  # type: ignore[arg-type]
    assert sorted(item.ref.account_id for item in found) == [f"{n:012d}" for n in range(count)]
    assert most[0] <= 3 * workers, most[0]
