"""Shared fixtures: moto's server on a free port, reached through a paging proxy via AWS_ENDPOINT_URL."""
from __future__ import annotations

import json
import socket
import urllib.request
from datetime import datetime, timezone

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bot.config import load_settings
from tests.awsproxy import AwsProxy

ACCOUNT = "123456789012"  # moto's default account
NOW = datetime.now(timezone.utc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path_factory):
    """No test reads the developer's environment or working directory: every SLACK_*, ECR_COST_* and AWS_*
    variable is cleared, and each test runs in its own empty directory (so no stray ecr-cost.db is found)."""
    import os

    for name in list(os.environ):
        if name.startswith(("SLACK_", "ECR_COST_", "AWS_")) or name.upper() in (
                "KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # no profile, no region from ~/.aws
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role lookups (slow, machine-specific)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def moto_server():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def _proxy(moto_server):
    proxy = AwsProxy(moto_server).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def aws(moto_server, _proxy, monkeypatch, tmp_path):
    """A clean moto, the environment a user would set, and the proxy (call counts, faults)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    _proxy.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", _proxy.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "ecr-cost.db"))
    return _proxy


@pytest.fixture
def settings(aws):
    return load_settings()


def ecr(region: str = "us-east-1", session: boto3.Session | None = None):
    return (session or boto3.Session()).client("ecr", region_name=region)


def put_policy(region: str, name: str, policy: dict) -> None:
    ecr(region).put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(policy))
