"""`policy preview|apply|rollback` and `decisions` against moto's server: backups, round trips, refusals."""
from __future__ import annotations

import json

import pytest

from bot.store import Store
from tests.helpers.aws import ACCOUNT, CUSTOM, adopted_base, current_policy, load, repository, run_cli


def store(settings) -> Store:
    return Store(settings.db_path)


def test_preview_names_the_images_and_the_bytes_freed(aws, capsys):
    repo = repository()
    load([repo])
    code, out, err = run_cli(capsys, "policy", "preview", "shop", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {"repository", "account_id", "region", "valid", "errors", "expiring", "expiring_image_count",
                        "remaining_image_count", "bytes_freed", "monthly_savings_usd"}
    assert doc["in_use"] == [] and doc["in_use_expiring"] == [] and doc["in_use_partial"] is False
    assert doc["valid"] is True and doc["errors"] == [] and doc["account_id"] == ACCOUNT
    tags = sorted(tag for entry in doc["expiring"] for tag in entry["image_tags"])
    # untagged keep 1 (2 of 3 leftovers go), latest keep 1 (latest-old goes), v keep 9 (16 go)
    assert tags == sorted(["latest-old"] + [f"v1.{n}.0" for n in range(16)])
    assert doc["expiring_image_count"] == 19 and doc["remaining_image_count"] == 30 - 19
    by_rule = {}
    for entry in doc["expiring"]:
        by_rule[entry["rule_priority"]] = by_rule.get(entry["rule_priority"], 0) + 1
    assert by_rule == {1: 2, 2: 1, 3: 16}
    expected = sum((n + 1) * 1_000_000 + 500 for n in range(16)) + 2 * (2_000_000 + 400) + 3_000_000 + 300
    assert doc["bytes_freed"] == expected  # the shared base layers stay: remaining images use them
    assert doc["monthly_savings_usd"] == pytest.approx(expected / 2**30 * 0.1, abs=1e-4)

    code, out, _ = run_cli(capsys, "policy", "preview", "shop")
    assert code == 0 and "adopting it (in-use images kept) expires 19 of 30 images" in out and "latest-old" in out


def test_preview_with_an_invalid_policy_is_valid_false_and_exit_1(aws, capsys, tmp_path):
    load([repository()])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "tagged", "tagPatternList": ["*a*b*c*d*"], "countType": "imageCountMoreThan",
        "countNumber": 1}, "action": {"type": "expire"}}]}))
    code, out, _ = run_cli(capsys, "policy", "preview", "shop", "--policy", str(bad), "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False and "5 wildcards" in doc["errors"][0]


def test_aws_preview_cross_check_tolerates_moto_lacking_it(aws, capsys):
    load([repository()])
    code, out, err = run_cli(capsys, "policy", "preview", "shop", "--aws-preview")
    assert code == 0 and "AWS preview unavailable" in err


def test_custom_policy_apply_base_then_rollback_restores_the_identical_text(aws, capsys, settings):
    load([repository(policy=CUSTOM)])
    code, out, err = run_cli(capsys, "policy", "apply", "shop", "--yes")
    assert code == 0, err
    assert json.loads(current_policy()) == adopted_base()
    db = store(settings)
    adopted = db.decisions()[-1]
    assert adopted.action == "adopted" and adopted.policy_before == CUSTOM and adopted.source == "cli"
    assert db.backup(adopted.backup_id) == (True, CUSTOM)
    assert adopted.projected_monthly_savings_usd > 0

    code, out, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 0, err
    assert current_policy() == CUSTOM  # byte for byte
    rolled = store(settings).decisions()[-1]
    assert rolled.action == "rolled_back" and rolled.policy_after == CUSTOM

    code, _, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 1 and "nothing to roll back" in err
    assert current_policy() == CUSTOM


def test_no_policy_apply_then_rollback_leaves_no_policy(aws, capsys, settings):
    load([repository()])
    assert run_cli(capsys, "policy", "apply", "shop", "--yes")[0] == 0
    assert current_policy() is not None
    assert store(settings).backup(store(settings).decisions()[-1].backup_id) == (False, None)
    assert run_cli(capsys, "policy", "rollback", "shop", "--yes")[0] == 0
    assert current_policy() is None
    code, out, _ = run_cli(capsys, "decisions", "--format", "json")
    log = json.loads(out)
    assert [d["action"] for d in log] == ["adopted", "rolled_back"]
    assert set(log[0]) == {"id", "repository", "account_id", "region", "action", "user_id", "source", "at",
                           "policy_before", "policy_after", "projected_monthly_savings_usd", "owners_checked",
                           "undoes", "reason", "note"}
    assert log[1]["undoes"] == log[0]["id"] and log[0]["owners_checked"] == ["U0SHOP123"]
    assert log[1]["policy_after"] is None and log[0]["policy_before"] is None
    code, out, _ = run_cli(capsys, "decisions")
    assert "adopted" in out and "rolled_back" in out and "shop" in out


def test_aws_rejecting_the_put_records_no_decision_keeps_the_backup_and_shows_the_message(aws, capsys, settings):
    load([repository(policy=CUSTOM)])
    aws.fail["PutLifecyclePolicy"] = ("InvalidParameterException",
                                      "Lifecycle policy validation failure: the service said no")
    code, _, err = run_cli(capsys, "policy", "apply", "shop", "--yes")
    assert code == 1
    assert "Lifecycle policy validation failure: the service said no" in err and "backup" in err
    db = store(settings)
    assert db.decisions() == []
    assert db.backup_count(f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop") == 1
    assert current_policy() == CUSTOM


@pytest.mark.parametrize("content, expected", [
    ("{oops", "not valid JSON"),
    (json.dumps({"rules": [{"rulePriority": "1", "selection": {}, "action": {}}]}).ljust(120), "rulePriority"),
    (json.dumps({"rules": [{"rulePriority": n, "selection": {"tagStatus": "tagged", "tagPrefixList": [f"p{n}"],
                                                              "countType": "imageCountMoreThan", "countNumber": 1},
                            "action": {"type": "expire"}} for n in range(1, 52)]}), "51 rules"),
    (json.dumps({"rules": [{"rulePriority": 1, "description": "x" * 31_000, "selection": {
        "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]}), "ECR accepts 100 to 30,720"),
])
def test_bad_policies_change_nothing(aws, capsys, tmp_path, settings, content, expected):
    load([repository(policy=CUSTOM)])
    path = tmp_path / "p.json"
    path.write_text(content)
    code, _, err = run_cli(capsys, "policy", "apply", "shop", "--policy", str(path), "--yes")
    assert code == 1 and expected in err and "Traceback" not in err
    assert current_policy() == CUSTOM and store(settings).decisions() == []
    code, _, err = run_cli(capsys, "policy", "validate", str(path))
    assert code == 1 and expected in err


def test_apply_needs_yes_and_a_known_repository(aws, capsys, settings):
    load([repository()])
    code, _, err = run_cli(capsys, "policy", "apply", "shop")
    assert code == 1 and "--yes" in err and current_policy() is None
    code, _, err = run_cli(capsys, "policy", "apply", "shpo", "--yes")
    assert code == 1 and "did you mean: shop" in err
    code, _, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 1 and "nothing to roll back" in err
    code, _, err = run_cli(capsys, "policy", "validate", "/no/such/file.json")
    assert code == 1 and "cannot read policy file" in err
    assert store(settings).decisions() == []
