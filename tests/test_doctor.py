"""`ecr-cost-bot doctor`: every check against moto's server over HTTP (through the proxy, which stands in for IAM's
policy simulator) and the Slack stand-in; the exit code says whether anything failed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.doctor import PERMISSIONS
from bot.slack.app import BOT_SCOPES
from tests.helpers.aws import ACCOUNT, ecr
from tests.slack_standin import SlackStandIn

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0REPORTS"
OTHER = "210987654321"
OTHER_ROLE = f"arn:aws:iam::{OTHER}:role/EcrCostReader"


@pytest.fixture
def slack(aws, monkeypatch):
    """A Slack workspace where everything is right: the token has the manifest's scopes, the bot is in the report
    channel, the app token opens Socket Mode."""
    standin = SlackStandIn()
    standin.scopes = list(BOT_SCOPES)
    standin.channels[CHANNEL] = {"name": "finops", "is_member": True}
    monkeypatch.setenv("SLACK_API_URL", standin.api_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test-token")
    monkeypatch.setenv("ECR_COST_REPORT_CHANNEL", CHANNEL)
    yield standin
    standin.stop()


def doctor(capsys) -> tuple[int, dict, str]:
    """(exit code, the JSON answer, the table)."""
    code = main(["doctor", "--format", "json"])
    answer = json.loads(capsys.readouterr().out)
    assert main(["doctor"]) == code
    table = capsys.readouterr().out
    return code, answer, table


def check(answer: dict, name: str) -> dict:
    found = [c for c in answer["checks"] if c["check"] == name]
    assert len(found) == 1, f"{name}: {[c['check'] for c in answer['checks']]}"
    return found[0]


def line(table: str, name: str) -> str:
    return next(row for row in table.splitlines() if re.match(rf"^\S+\s+{re.escape(name)}\s", row))


def test_all_pass_exits_0_with_one_line_per_check(aws, slack, capsys, tmp_path):
    ecr().create_repository(repositoryName="app")
    aws.calls.clear()
    aws.simulated_denials = {}  # the policy simulator answers: everything allowed
    code, answer, table = doctor(capsys)
    assert code == 0 and answer["ok"], table
    statuses = {c["check"]: c["status"] for c in answer["checks"]}
    assert statuses["AWS identity"] == "ok" and "us-east-1 (AWS_REGION)" in check(answer, "AWS identity")["detail"]
    assert statuses[f"account {ACCOUNT}"] == "ok"
    assert all(statuses[f"IAM {p.feature}"] == "ok" for p in PERMISSIONS), statuses
    assert "simulated with iam:SimulatePrincipalPolicy" in check(answer, "IAM scan")["detail"]
    assert statuses["Slack token"] == statuses["Slack scopes"] == statuses["report channel"] == "ok"
    assert statuses["Slack mode"] == "ok" and "Socket Mode" in check(answer, "Slack mode")["detail"]
    assert statuses["database"] == "ok"
    assert check(answer, "CUR")["detail"].startswith("skipped: not configured")
    assert check(answer, "Kubernetes")["detail"].startswith("skipped: not configured")
    lines = table.splitlines()
    assert len(lines) == len(answer["checks"]) + 1 and lines[-1].startswith(f"{len(answer['checks'])} checks: ")
    assert "FAIL" not in table
    # nothing written anywhere: no database created, nothing posted, no socket opened past the check
    assert not (tmp_path / "ecr-cost.db").exists() and not list(Path.cwd().iterdir())
    methods = {m for m, _ in slack.calls}
    assert methods <= {"auth.test", "conversations.info", "apps.connections.open"}, methods
    assert aws.calls["SimulatePrincipalPolicy"] == 2 and not any(
        op.startswith(("Put", "Delete", "Tag", "BatchDelete", "Create", "GetCostAndUsage")) for op in aws.calls)


def test_without_the_simulator_harmless_reads_check_what_they_can_and_say_what_they_cannot(aws, slack, capsys):
    aws.fail["SimulatePrincipalPolicy"] = ("AccessDenied", "User: arn:aws:iam::123456789012:user/bot is not "
                                                           "authorized to perform: iam:SimulatePrincipalPolicy")
    code, answer, table = doctor(capsys)
    assert code == 0, table  # what cannot be checked is not a failure
    scan, adopt, billing = (check(answer, f"IAM {f}") for f in ("scan", "adopt", "billing"))
    assert scan["status"] == "ok" and "harmless reads" in scan["detail"]
    assert scan["detail"].startswith("5 actions allowed in 1 account")
    in_use = check(answer, "IAM in-use")  # moto lacks DescribeServiceRevisions: said, not counted as allowed
    assert in_use["detail"].startswith("10 of 11 actions allowed")
    assert "ecs:DescribeServiceRevisions: the harmless read got no answer" in in_use["detail"]
    assert "ecr:PutLifecyclePolicy" in adopt["detail"] and "writes or billed calls, never tried" in adopt["detail"]
    for unchecked in (adopt, billing):
        assert unchecked["status"] == "unchecked"
        assert "cannot check without iam:SimulatePrincipalPolicy" in unchecked["detail"]
        assert "grant iam:SimulatePrincipalPolicy" in unchecked["fix"]
    assert "GetCostAndUsage" not in aws.calls  # Cost Explorer bills each call: never tried
    assert not any(op.startswith(("Put", "Delete", "Tag", "BatchDelete", "Create", "Start")) for op in aws.calls)


def test_a_read_refused_fails_the_feature_and_names_the_action(aws, slack, capsys):
    aws.fail["SimulatePrincipalPolicy"] = ("AccessDenied", "not authorized to perform: iam:SimulatePrincipalPolicy")
    aws.fail["ListClusters"] = ("AccessDeniedException", "User: arn:aws:iam::123456789012:user/bot is not "
                                                         "authorized to perform: ecs:ListClusters")
    code, answer, table = doctor(capsys)
    assert code == 1
    in_use = check(answer, "IAM in-use")
    assert in_use["status"] == "fail" and "ecs:ListClusters" in in_use["detail"] and "WhereImagesRun" in in_use["fix"]
    assert "FAIL" in line(table, "IAM in-use") and "fix: grant the WhereImagesRun" in line(table, "IAM in-use")


def test_simulated_denials_fail_required_features_and_warn_for_optional_ones(aws, slack, capsys):
    principal = _principal()
    aws.simulated_denials = {principal: {"ecr:PutLifecyclePolicy", "ce:GetCostAndUsage"}}
    code, answer, _ = doctor(capsys)
    assert code == 1
    adopt, billing = check(answer, "IAM adopt"), check(answer, "IAM billing")
    assert adopt["status"] == "warn" and "ecr:PutLifecyclePolicy" in adopt["detail"] and "AllowChanges" in adopt["fix"]
    assert billing["status"] == "fail" and "ECR_COST_BILLING=off" in billing["fix"]


def test_a_bad_token_fails_the_slack_line_with_its_fix(aws, slack, capsys):
    slack.fail_methods["auth.test"] = "invalid_auth"
    code, answer, table = doctor(capsys)
    assert code == 1
    token = check(answer, "Slack token")
    assert token["status"] == "fail" and "SLACK_BOT_TOKEN: Slack answered invalid_auth" in token["detail"]
    assert "SLACK_BOT_TOKEN is not valid" in token["fix"]
    assert check(answer, "Slack scopes")["status"] == "skip"  # not failures of their own
    assert "fix: check the token" in line(table, "Slack token")


def test_the_bot_not_in_the_channel_is_told_to_invite_it(aws, slack, capsys):
    slack.channels[CHANNEL]["is_member"] = False
    code, answer, table = doctor(capsys)
    assert code == 1
    channel = check(answer, "report channel")
    assert channel["status"] == "fail" and "#finops" in channel["detail"] and "/invite @ecr-cost" in channel["fix"]
    assert "/invite @ecr-cost" in line(table, "report channel")


def test_without_channels_read_membership_is_told_by_the_history(aws, slack, capsys):
    slack.fail_methods["conversations.info"] = "missing_scope"
    slack.fail_methods["conversations.history"] = "not_in_channel"
    code, answer, _ = doctor(capsys)
    assert code == 1 and "/invite @ecr-cost" in check(answer, "report channel")["fix"]
    slack.fail_methods.pop("conversations.history")
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, "report channel")["status"] == "ok"


def test_an_unknown_channel_names_the_variable(aws, slack, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_REPORT_CHANNEL", "C0NOSUCH1")
    code, answer, _ = doctor(capsys)
    channel = check(answer, "report channel")
    assert code == 1 and "ECR_COST_REPORT_CHANNEL: Slack answered channel_not_found" in channel["detail"]
    assert "check ECR_COST_REPORT_CHANNEL" in channel["fix"]


def test_missing_scopes_are_named(aws, slack, capsys):
    slack.scopes = [s for s in BOT_SCOPES if s not in ("files:write", "channels:history")]
    code, answer, _ = doctor(capsys)
    scopes = check(answer, "Slack scopes")
    assert code == 1 and scopes["status"] == "fail"
    assert scopes["detail"] == "the token lacks files:write, channels:history" and "manifest.yml" in scopes["fix"]


def test_a_bad_app_token_fails_socket_mode_and_http_mode_needs_the_signing_secret(aws, slack, capsys, monkeypatch):
    slack.fail_methods["apps.connections.open"] = "invalid_auth"
    code, answer, _ = doctor(capsys)
    mode = check(answer, "Slack mode")
    assert code == 1 and "SLACK_APP_TOKEN: Slack answered invalid_auth" in mode["detail"]
    monkeypatch.delenv("SLACK_APP_TOKEN")
    code, answer, _ = doctor(capsys)
    assert code == 1 and "SLACK_SIGNING_SECRET" in check(answer, "Slack mode")["fix"]
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    code, answer, _ = doctor(capsys)
    assert code == 0 and "HTTP mode" in check(answer, "Slack mode")["detail"]


def test_an_account_whose_role_cannot_be_assumed_fails_its_line(aws, slack, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", OTHER_ROLE)
    aws.simulated_denials = {}
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, f"account {OTHER}")["status"] == "ok"
    assert "2 accounts" in check(answer, "IAM scan")["detail"]
    aws.deny_roles.add(OTHER_ROLE)
    code, answer, table = doctor(capsys)
    assert code == 1
    other = check(answer, f"account {OTHER}")
    assert other["status"] == "fail" and f"cannot assume {OTHER_ROLE}" in other["detail"]
    assert "trusts the bot's identity" in other["fix"]
    assert check(answer, f"account {ACCOUNT}")["status"] == "ok"  # the rest is still checked
    assert "\n" not in other["detail"] and len(line(table, f"account {OTHER}")) < 600


def test_an_organisation_s_readable_accounts_are_counted_on_one_line(aws, slack, capsys, monkeypatch):
    import bot.doctor

    monkeypatch.setattr(bot.doctor, "ACCOUNT_LINES", 0)
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", OTHER_ROLE)
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, f"account {ACCOUNT}")["status"] == "ok"  # the bot's own: always its line
    assert check(answer, "other accounts")["detail"] == "1 more account readable: ECR listed in each of their regions"
    assert not [c for c in answer["checks"] if c["check"] == f"account {OTHER}"]


def test_a_region_that_refuses_fails_its_account(aws, slack, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    aws.deny_regions.add("eu-west-1")
    code, answer, _ = doctor(capsys)
    account = check(answer, f"account {ACCOUNT}")
    assert code == 1 and account["status"] == "fail" and "eu-west-1: AccessDeniedException" in account["detail"]
    assert "us-east-1" not in account["detail"].split("cannot list repositories in")[1]


def test_refused_credentials_are_one_line(aws, slack, capsys):
    aws.fail["GetCallerIdentity"] = ("InvalidClientTokenId", "The security token included in the request is "
                                                             "invalid.")
    code, answer, _ = doctor(capsys)
    identity = check(answer, "AWS identity")
    assert code == 1 and "the AWS credentials were refused" in identity["detail"] and "refresh" in identity["fix"]
    assert check(answer, "Slack token")["status"] == "ok"  # Slack is checked all the same


def test_no_cur_files_fails_with_the_fix_and_files_pass(aws, slack, capsys, monkeypatch, tmp_path):
    folder = tmp_path / "cur"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")  # an export folder's metadata: not the data
    monkeypatch.setenv("ECR_COST_CUR", str(folder))
    code, answer, table = doctor(capsys)
    cur = check(answer, "CUR")
    assert code == 1 and cur["status"] == "fail" and str(folder) in cur["detail"]
    assert "Parquet" in cur["fix"] and "fix: point ECR_COST_CUR" in line(table, "CUR")
    (folder / "data" / "BILLING_PERIOD=2026-11").mkdir(parents=True)
    (folder / "data" / "BILLING_PERIOD=2026-11" / "part-0.parquet").write_bytes(b"PAR1")
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, "CUR")["detail"].startswith("1 Parquet file under")


def test_cur_on_s3_lists_the_prefix(aws, slack, capsys, monkeypatch):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    monkeypatch.setenv("ECR_COST_CUR", "s3://billing/cur/ecr")
    code, answer, _ = doctor(capsys)
    cur = check(answer, "CUR")
    assert code == 1 and "cannot list s3://billing/cur/ecr" in cur["detail"] and "ECR_COST_CUR" in cur["fix"]
    s3.create_bucket(Bucket="billing")
    s3.put_object(Bucket="billing", Key="cur/ecr/metadata/manifest.json", Body=b"{}")
    code, answer, _ = doctor(capsys)
    assert code == 1 and "no Parquet file under ECR_COST_CUR=s3://billing/cur/ecr" in check(answer, "CUR")["detail"]
    s3.put_object(Bucket="billing", Key="cur/ecr/data/part-0.parquet", Body=b"PAR1")
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, "CUR")["status"] == "ok"


def test_the_athena_table_must_exist(aws, slack, capsys, monkeypatch):
    import boto3

    monkeypatch.setenv("ECR_COST_CUR_ATHENA", "cur.ecr_export")
    code, answer, _ = doctor(capsys)
    cur = check(answer, "CUR")
    assert code == 1 and "EntityNotFoundException" in cur["detail"] and "ECR_COST_CUR_ATHENA" in cur["fix"]
    glue = boto3.client("glue", region_name="us-east-1")
    glue.create_database(DatabaseInput={"Name": "cur"})
    glue.create_table(DatabaseName="cur", TableInput={"Name": "ecr_export"})
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, "CUR")["detail"] == "Athena table cur.ecr_export found"


def test_billing_off_skips_cost_explorer(aws, slack, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_BILLING", "off")
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, "IAM billing")["detail"] == "skipped: not configured (ECR_COST_BILLING=off)"


def test_the_database_must_be_writable_and_nothing_is_created(aws, slack, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "missing" / "ecr-cost.db"))
    code, answer, _ = doctor(capsys)
    database = check(answer, "database")
    assert code == 1 and "does not exist" in database["detail"] and "create" in database["fix"]
    assert not (tmp_path / "missing").exists()
    path = tmp_path / "ecr-cost.db"
    path.write_text("not a database, but long enough for SQLite to read its header: " + "x" * 100)
    monkeypatch.setenv("ECR_COST_DB", str(path))
    code, answer, _ = doctor(capsys)
    assert code == 1 and "cannot write" in check(answer, "database")["detail"]
    path.unlink()
    assert main(["decisions"]) == 0  # a real database
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, answer, _ = doctor(capsys)
    assert code == 0 and check(answer, "database")["detail"].endswith("schema objects)")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_kubernetes_contexts_must_load(aws, slack, capsys, monkeypatch, tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("ECR_COST_KUBE_CONTEXTS", "c,nosuch")
    code, answer, _ = doctor(capsys)
    assert code == 1
    assert "cannot list pods" in check(answer, "Kubernetes c")["detail"]  # nothing listens on port 9
    assert "kubectl config get-contexts" in check(answer, "Kubernetes nosuch")["fix"]


def test_the_required_scopes_are_the_manifests():
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert list(BOT_SCOPES) == manifest["oauth_config"]["scopes"]["bot"]


def test_doctor_checks_every_action_the_deploy_templates_grant():
    """The templates and doctor's one list agree: what the roles grant for a feature, doctor checks (the
    organisation's own actions are checked by entering the accounts)."""
    checked = {a for p in PERMISSIONS for a in p.actions}
    for template in (ROOT / "deploy" / "cloudformation").glob("*.yaml"):
        granted = set(re.findall(r"^\s+- ((?:ecr|ecs|lambda|ce):\w+)\s*$", template.read_text(), re.M))
        assert granted and granted <= checked, f"{template.name}: {sorted(granted - checked)}"


def _principal() -> str:
    import boto3

    return boto3.client("sts", region_name="us-east-1").get_caller_identity()["Arn"]


def test_nothing_configured_says_what_to_set_first_without_a_traceback(capsys):
    code, answer, table = doctor(capsys)
    assert code == 1 and "Traceback" not in table
    assert check(answer, "AWS identity")["fix"] == "set ECR_COST_REGIONS (or AWS_REGION)"
    assert "set SLACK_BOT_TOKEN" in check(answer, "Slack token")["fix"]
    assert check(answer, "database")["status"] == "ok" and not list(Path.cwd().iterdir())
