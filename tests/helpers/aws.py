"""moto's account, the sample repositories, loading them into moto's server, the ECR client and the CLI."""
from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import boto3

from bot.cli import main
from bot.config import shipped_base_policy_text
from bot.core.inuse import protected
from bot.sample import MB, SampleRepository, blob, correct_moto, image, push

ACCOUNT = "123456789012"  # moto's default account
NOW = datetime.now(UTC)
BASE = [blob("debian", 30 * MB), blob("python", 12 * MB)]
CUSTOM = json.dumps({"rules": [{"rulePriority": 1, "description": "mine, formatted my way",
                                "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                              "countUnit": "days", "countNumber": 30},
                                "action": {"type": "expire"}}]}, indent=4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ecr(region: str = "us-east-1", session: boto3.Session | None = None):
    return (session or boto3.Session()).client("ecr", region_name=region)


def put_policy(region: str, name: str, policy: dict) -> None:
    ecr(region).put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(policy))


def load(repos, account=ACCOUNT, session=None):
    for repo in repos:
        push(ecr(repo.region, session), repo)
    correct_moto(account, repos, NOW)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def repository(policy: str | None = None) -> SampleRepository:
    """25 release images, 3 untagged leftovers, 2 'latest' generations: the base policy expires some."""
    images = [image(BASE + [blob(f"rel-{n}", (n + 1) * 1_000_000)], blob(f"cfg-{n}", 500), (f"v1.{n}.0",),
                    pushed_days_ago=100 - n) for n in range(25)]
    images += [image(BASE + [blob(f"left-{n}", 2_000_000)], blob(f"lcfg-{n}", 400), (), pushed_days_ago=50 - n)
               for n in range(3)]
    images += [image(BASE + [blob(f"latest-{n}", 3_000_000)], blob(f"tcfg-{n}", 300), ("latest",) if n else
                     ("latest-old",), pushed_days_ago=10 - n) for n in range(2)]
    return SampleRepository("us-east-1", "shop", images, tags={"owner": "U0SHOP123"}, policy=policy)


def adopted_base() -> dict:
    """The base policy as the bot adopts it: with its first rule keeping the images in use."""
    return protected(json.loads(shipped_base_policy_text()))


def current_policy() -> str | None:
    client = ecr()
    try:
        return client.get_lifecycle_policy(repositoryName="shop")["lifecyclePolicyText"]
    except client.exceptions.LifecyclePolicyNotFoundException:
        return None


ROLE = "EcrCostReader"  # the role the bot enters other accounts through, in the tests


def role_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{ROLE}"


def entered(account_id: str) -> boto3.Session:
    """A session in ``account_id``, as the bot enters it (moto maps the credentials to that account)."""
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=role_arn(account_id), RoleSessionName="test")["Credentials"]
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"], region_name="us-east-1")
