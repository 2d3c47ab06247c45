"""Shared fixtures: moto's server on a free port, reached through a paging proxy via AWS_ENDPOINT_URL; the Slack
stand-in and `serve` pointed at it; the weekly report job. Plain helpers live in tests/helpers/."""
from __future__ import annotations

import urllib.request

import pytest
from moto.server import ThreadedMotoServer

from bot.config import load_settings
from tests.awsproxy import AwsProxy
from tests.helpers import inuse, report
from tests.helpers.aws import CUSTOM, free_port, load, repository, run_cli
from tests.helpers.slack import ALICE, OWNER, serving
from tests.slack_standin import SlackStandIn


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
    """moto's server, whose DescribeRegions lists the regions enabled in an account, as AWS does (moto lists all 38
    it knows, those not opted in and GovCloud's and China's among them: twice the runtime reads of a real account)."""
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    enabled = [r for r in RegionsAndZonesBackend.regions
               if r.opt_in_status == "opt-in-not-required" and not r.name.startswith(("us-gov-", "cn-"))]
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RegionsAndZonesBackend, "regions", enabled)
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


@pytest.fixture(scope="module")
def slack():
    """The Slack stand-in (Web API and response_urls over HTTP), one per test module; `reset` between tests."""
    standin = SlackStandIn(emails={"alice@example.com": ALICE})
    yield standin
    standin.stop()


@pytest.fixture
def served_estate():
    """What `served` loads into moto before its scan: the crafted `shop` repository, owned by OWNER and alice.
    A test module serving another estate overrides this fixture."""
    repo = repository(policy=CUSTOM)
    repo.tags["owner"] = f"{OWNER} alice@example.com"
    return [repo]


@pytest.fixture
def served(aws, slack, served_estate, capsys, tmp_path):
    """`served_estate` in moto, one scan stored, then `serve` as its own process; yields its base URL."""
    slack.reset()
    load(served_estate)
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0
    with serving(slack, tmp_path) as base:
        yield base


@pytest.fixture
def job_parts(tmp_path):
    """The weekly report job over a store of known rows: (make_job, the stand-in, the store, the application)."""
    yield from report.job_parts(tmp_path)


@pytest.fixture
def in_use_estate(aws, monkeypatch):
    """The api repository, an ECS service whose tag moved (its task still runs the old digest), a Lambda function
    on a release tag (tests/helpers/inuse.py)."""
    return inuse.in_use_estate(monkeypatch)
