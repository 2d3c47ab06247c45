"""The promises behind the button, each against moto's server: only owners act (the owner tag as AWS has it
at the moment of the change), nothing is lost (an undo stack back to the original), a hand edit is never
overwritten, one change and one scan at a time, scans that die are cleaned up, and a newcomer's first run
says what is wrong instead of printing an empty table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.core.inuse import protected
from bot.errors import HandEdited, NotAnOwner, PolicyOperationError
from bot.gate import Actor
from bot.store import PROCESS, Store
from bot.wiring import components
from tests.helpers.aws import ACCOUNT, CUSTOM, adopted_base, current_policy, ecr, load, repository, run_cli

ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop"
ROOT = Path(__file__).resolve().parent.parent
SECOND = json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 25}, "action": {"type": "expire"}}]})


def slack_user(user_id: str, admin: bool = False) -> Actor:
    return Actor(user_id, "slack", is_admin=admin, names_me=lambda entry: entry == user_id)


def decisions(settings) -> list:
    store = Store(settings.db_path)
    try:
        return store.decisions()
    finally:
        store.close()


# -- 1. adoptions form an undo stack ---------------------------------------------------------------

def test_two_adoptions_then_two_rollbacks_restore_the_original_byte_for_byte(aws, capsys, settings, tmp_path):
    load([repository(policy=CUSTOM)])
    second = tmp_path / "second.json"
    second.write_text(SECOND)
    assert run_cli(capsys, "policy", "apply", "shop", "--yes")[0] == 0
    assert run_cli(capsys, "policy", "apply", "shop", "--policy", str(second), "--yes")[0] == 0
    assert json.loads(current_policy()) == protected(json.loads(SECOND))  # adopted in its protected form

    code, out, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 0, err
    assert json.loads(current_policy()) == adopted_base()  # one step back: the base (protected)
    code, out, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 0, err
    assert current_policy() == CUSTOM  # two steps back: the team's original, byte for byte
    code, _, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 1 and "nothing to roll back" in err and current_policy() == CUSTOM
    log = decisions(settings)
    assert [d.action for d in log] == ["adopted", "adopted", "rolled_back", "rolled_back"]
    assert log[2].undoes == log[1].id and log[3].undoes == log[0].id


def test_adopting_the_rules_already_in_force_is_a_no_op_with_a_note(aws, capsys, settings):
    load([repository()])
    assert run_cli(capsys, "policy", "apply", "shop", "--yes")[0] == 0
    store = Store(settings.db_path)
    backups = store.backup_count(ARN)
    store.close()
    code, out, _ = run_cli(capsys, "policy", "apply", "shop", "--yes")
    assert code == 0 and "already has these rules" in out and "nothing was changed" in out
    assert len(decisions(settings)) == 1
    store = Store(settings.db_path)
    assert store.backup_count(ARN) == backups  # no backup either
    store.close()
    assert run_cli(capsys, "policy", "rollback", "shop", "--yes")[0] == 0
    assert current_policy() is None  # the one adoption undone: no policy, as before


# -- 2. ownership from AWS at the moment of the change ---------------------------------------------

def test_owners_come_from_the_tag_as_aws_has_it_not_from_the_scan(aws, capsys, settings):
    load([repository()])  # owner tag: U0SHOP123
    assert run_cli(capsys, "scan")[0] == 0
    ecr().tag_resource(resourceArn=ARN, tags=[{"Key": "owner", "Value": "U0NEWOWNR"}])
    with components(load_settings()) as built:
        _, row = built.application.find("shop")
        assert row.owners == ("U0SHOP123",)  # the scan still names the former owner
        with pytest.raises(NotAnOwner) as refused:
            built.application.adopt(row, slack_user("U0SHOP123"))
        assert refused.value.owners == ("U0NEWOWNR",)
        assert current_policy() is None and decisions(settings) == []
        change = built.application.adopt(row, slack_user("U0NEWOWNR"))
        assert change.decision.owners_checked == ("U0NEWOWNR",)
        assert current_policy() is not None
        with pytest.raises(NotAnOwner):
            built.application.rollback(row, slack_user("U0SHOP123"))
        admin = built.application.rollback(row, slack_user("U0ADMIN01", admin=True))
        assert admin.decision.action == "rolled_back" and current_policy() is None


def test_a_tag_read_that_fails_or_a_deleted_repository_changes_nothing(aws, capsys, settings):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "scan")[0] == 0
    with components(load_settings()) as built:
        _, row = built.application.find("shop")
        aws.fail["ListTagsForResource"] = ("AccessDeniedException", "not authorized: ecr:ListTagsForResource")
        with pytest.raises(PolicyOperationError, match="cannot read the owner tag.*nothing was changed"):
            built.application.adopt(row, slack_user("U0SHOP123"))
        aws.fail.clear()
        assert current_policy() == CUSTOM and decisions(settings) == []

        ecr().delete_repository(repositoryName="shop", force=True)
        with pytest.raises(PolicyOperationError, match="no longer exists.*nothing was changed"):
            built.application.adopt(row, slack_user("U0SHOP123"))
        assert decisions(settings) == []


def test_a_change_in_progress_elsewhere_blocks_a_second_one(aws, capsys, settings):
    load([repository()])
    assert run_cli(capsys, "scan")[0] == 0
    with components(load_settings()) as built:
        _, row = built.application.find("shop")
        assert built.store.claim(ARN, "other-replica:1:abc")  # another process is changing it
        with pytest.raises(PolicyOperationError, match="another change to shop is in progress"):
            built.application.adopt(row, slack_user("U0SHOP123"))
        assert current_policy() is None and decisions(settings) == []
        built.store.release_claim(ARN, "other-replica:1:abc")
        assert built.application.adopt(row, slack_user("U0SHOP123")).decision is not None


def test_concurrent_adopt_and_rollback_never_act_at_once(aws, capsys, settings):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "scan")[0] == 0
    with components(load_settings()) as built:
        _, row = built.application.find("shop")
        owner = slack_user("U0SHOP123")
        built.application.adopt(row, owner)
        results, start = [], threading.Barrier(6)

        def attempt(kind):
            start.wait(timeout=10)
            try:
                change = built.application.rollback(row, owner) if kind else built.application.adopt(row, owner)
                results.append(change.decision.action if change.decision else "no-op")
            except PolicyOperationError as exc:
                results.append(str(exc))

        threads = [threading.Thread(target=attempt, args=(n % 2,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(results) == 6
    # whatever interleaving happened, walking the stack back ends at the original
    while run_cli(capsys, "policy", "rollback", "shop", "--yes")[0] == 0:
        pass
    assert current_policy() == CUSTOM


# -- 3. a hand edit is never overwritten without force ----------------------------------------------

def test_rollback_refuses_over_a_hand_edit_unless_forced(aws, capsys, settings):
    load([repository(policy=CUSTOM)])
    assert run_cli(capsys, "policy", "apply", "shop", "--yes")[0] == 0
    ecr().put_lifecycle_policy(repositoryName="shop", lifecyclePolicyText=SECOND)  # someone, in the console
    code, out, err = run_cli(capsys, "policy", "rollback", "shop", "--yes")
    assert code == 1 and "changed by hand" in err and "--force" in err
    assert "countNumber\": 25" in err and "in AWS now" in err and "what the bot last set" in err
    assert current_policy() == SECOND and [d.action for d in decisions(settings)] == ["adopted"]

    code, out, err = run_cli(capsys, "policy", "rollback", "shop", "--yes", "--force")
    assert code == 0, err
    assert current_policy() == CUSTOM
    rolled = decisions(settings)[-1]
    assert rolled.policy_before == SECOND  # the hand edit is kept in the log and in a backup
    store = Store(settings.db_path)
    assert store.backup(rolled.backup_id) == (True, SECOND)
    store.close()


def test_rollback_over_a_hand_edit_raises_with_both_policies(aws, capsys, settings):
    load([repository()])
    assert run_cli(capsys, "scan")[0] == 0
    with components(load_settings()) as built:
        _, row = built.application.find("shop")
        built.application.adopt(row, slack_user("U0SHOP123"))
        ecr().delete_lifecycle_policy(repositoryName="shop")  # removed by hand
        with pytest.raises(HandEdited) as edited:
            built.application.rollback(row, slack_user("U0SHOP123"))
        assert edited.value.live is None and json.loads(edited.value.expected) == adopted_base()
        assert built.application.rollback(row, slack_user("U0SHOP123"), force=True).decision is not None


# -- 4. one rescan at a time -----------------------------------------------------------------------

@pytest.mark.parametrize("stale", [False, True])
def test_concurrent_requests_cause_exactly_one_scan(aws, capsys, settings, monkeypatch, stale):
    load([repository()])
    if stale:
        assert run_cli(capsys, "scan")[0] == 0
        monkeypatch.setenv("ECR_COST_SNAPSHOT_MAX_AGE_HOURS", "0")
    aws.calls.clear()
    with components(load_settings()) as built:
        start, answers = threading.Barrier(5), []

        def ask():
            start.wait(timeout=10)
            answers.append(built.application.latest(fresh=True))

        threads = [threading.Thread(target=ask) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(answers) == 5 and all(a is not None and a.repositories for a in answers)
        assert aws.calls["GetCallerIdentity"] == 1 and aws.calls["DescribeRepositories"] == 1
        scans = list(built.store.db["scans"].rows_where("status = 'complete'"))
        assert len(scans) == (2 if stale else 1)


# -- 5. scans that die are abandoned and pruned ----------------------------------------------------

def test_a_killed_scan_is_abandoned_and_its_rows_pruned(aws, capsys, settings):
    load([repository()])
    for _ in range(3):
        assert run_cli(capsys, "scan")[0] == 0
    killed = subprocess.run([sys.executable, "-c", f"""
import os
from datetime import datetime, timezone
from bot.core.inuse import protected
from bot.store import PROCESS, Store
from tests.helpers.rows import row
store = Store({settings.db_path!r})
scan_id = store.begin_scan(datetime.now(timezone.utc), 0.1)
store.save_repository(scan_id, row("half-read", 10), [])
print(scan_id, flush=True)
os._exit(9)  # killed midway: no finish_scan, no cleanup
"""], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert killed.returncode == 9, killed.stderr
    dead = int(killed.stdout.strip())
    store = Store(settings.db_path)
    assert store.scan_status(dead) == "running"
    store.close()

    assert run_cli(capsys, "scan")[0] == 0  # the next scan notices the dead one
    store = Store(settings.db_path)
    try:
        assert store.scan_status(dead) == "abandoned"
        assert store.db["repository_snapshots"].count_where("scan_id = ?", [dead]) == 0
        kept = {r["scan_id"] for r in store.db.query("select distinct scan_id from snapshot_images")}
        latest_two = [r["id"] for r in store.db.query(
            "select id from scans where status = 'complete' order by id desc limit 2")]
        assert kept == set(latest_two)
        assert store.running_scan() is None
    finally:
        store.close()


def test_serve_start_up_abandons_scans_a_dead_process_left_running(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    try:
        from datetime import datetime
        with store.db.conn:
            store.db["scans"].insert({"generated_at": datetime.now(UTC).isoformat(), "status": "running",
                                      "holder": f"{os.uname().nodename}:999999999:dead:{PROCESS.split(':')[3]}",
                                      "heartbeat_at": datetime.now(UTC).isoformat()})
        assert store.abandon_dead_scans() == [1]
        assert store.scan_status(1) == "abandoned"
    finally:
        store.close()


# -- 9 and 10. a newcomer's first run ---------------------------------------------------------------

def cli(env: dict, *argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def base_env(tmp_path) -> dict:
    """Only what a fresh container has: no AWS_DEFAULT_REGION, no profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECR_COST_", "SLACK_"))}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true", "ECR_COST_DB": str(tmp_path / "ecr-cost.db"),
                "PYTHONPATH": str(ROOT)})
    return env


def test_the_readmes_docker_run_environment_scans(aws, tmp_path):
    load([repository()])
    other = repository()
    load([type(other)("eu-west-1", "shop-eu", other.images, tags=other.tags)])
    env = base_env(tmp_path) | {"AWS_ENDPOINT_URL": aws.url, "AWS_ACCESS_KEY_ID": "testing",
                                "AWS_SECRET_ACCESS_KEY": "testing"}
    # exactly the README's line: docker run -e AWS_REGION=us-east-1 -e ECR_COST_REGIONS=us-east-1,eu-west-1 ...
    done = cli(env | {"AWS_REGION": "us-east-1", "ECR_COST_REGIONS": "us-east-1,eu-west-1"}, "scan", "--format",
               "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert {r["repository"] for r in doc["repositories"]} == {"shop", "shop-eu"} and not doc["partial"]
    # AWS_REGION alone (what ECS, Lambda and EKS set): that region
    done = cli(env | {"AWS_REGION": "eu-west-1"}, "scan", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["repository"] for r in json.loads(done.stdout)["repositories"]] == ["shop-eu"]


@pytest.mark.parametrize("argv", [("scan",), ("repo", "shop"), ("policy", "preview", "shop"), ("report",),
                                  ("scan", "--format", "json")])
@pytest.mark.parametrize("missing, says", [
    ("credentials", "no AWS credentials found: set AWS_PROFILE"),
    ("region", "no region: set ECR_COST_REGIONS or AWS_REGION"),
])
def test_nothing_readable_is_one_line_naming_the_cause_and_the_fix(aws, tmp_path, argv, missing, says):
    env = base_env(tmp_path) | {"AWS_ENDPOINT_URL": aws.url}
    if missing == "region":
        env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    else:
        env |= {"AWS_REGION": "us-east-1"}
    done = cli(env, *argv, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""  # no empty table, no report of zeros
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr


# -- 7. the suite itself does not read the machine -------------------------------------------------

def test_the_suite_ignores_a_hostile_environment_and_working_directory(tmp_path):
    (tmp_path / "ecr-cost.db").write_bytes(b"not a database at all")
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-someone-elses", "SLACK_APP_TOKEN": "xapp-1-real",
           "ECR_COST_REGIONS": "not-a-region", "ECR_COST_ADMINS": "nobody", "AWS_REGION": "mars-north-9",
           "AWS_PROFILE": "does-not-exist", "ECR_COST_DB": str(tmp_path / "ecr-cost.db")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                           str(ROOT / "tests" / "test_store.py"), str(ROOT / "tests" / "test_analysis.py"),
                           str(ROOT / "tests" / "test_config_and_cli.py"), "-k", "not demo"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
