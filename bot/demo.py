"""`ecr-cost-bot demo`: the product on an embedded sample registry (moto, in-process)."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import TextIO

from .config import Settings

DEMO_ACCOUNT = "123456789012"  # moto's default account
DEMO_REGIONS = ("us-east-1", "eu-west-1")


@contextmanager
def _sample_aws_environment():
    """Fake credentials, no endpoint override: every AWS call stays inside moto."""
    saved = dict(os.environ)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_STS", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update({"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                       "AWS_SESSION_TOKEN": "demo", "AWS_DEFAULT_REGION": DEMO_REGIONS[0]})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_demo(settings: Settings, out: TextIO) -> int:
    try:
        import boto3
        from moto import mock_aws
    except ImportError:
        out.write("demo needs the sample registry: pip install 'ecr-cost-bot[demo]'\n")
        return 1
    from .cli import _print_scan, repository_detail
    from .sample import load_estate, sample_estate
    from .store import Store

    with _sample_aws_environment(), mock_aws(), tempfile.TemporaryDirectory(prefix="ecr-cost-demo-") as workdir:
        now = datetime.now(timezone.utc)
        estate = sample_estate()
        session = boto3.Session(region_name=DEMO_REGIONS[0])
        load_estate(session, DEMO_ACCOUNT, estate, now)
        out.write(f"Sample registry: {len(estate)} repositories, "
                  f"{sum(len(r.all_images()) for r in estate)} images in {', '.join(DEMO_REGIONS)} "
                  f"(account {DEMO_ACCOUNT}).\n\n")
        settings = replace(settings, regions=DEMO_REGIONS, role_arns=(), db_path=os.path.join(workdir, "demo.db"))
        store = Store(settings.db_path)
        try:
            from .cli import _scan

            result = _scan(settings, store, lambda role_arn: session, log=out)
            out.write("\n")
            _print_scan(result, "table", settings.base_policy)
            top = result.repositories[0]
            out.write(f"\nThe costliest repository, as `ecr-cost-bot repo {top.repository}` shows it:\n\n")
            out.write(repository_detail(store, settings, top.repository, "text") + "\n")
            _base_policy_savings(result, store, settings, session, out)
        finally:
            store.close()
    return 0


def _base_policy_savings(result, store, settings: Settings, session, out: TextIO) -> None:
    """What adopting the base policy would save, repository by repository (from the scan's image data)."""
    from .adoption import PolicyOperations
    from .aws import EcrCollector
    from .core.analysis import display_names
    from .core.render import gib, preview_text, text_table, usd

    collector = EcrCollector(lambda role_arn: session, DEMO_REGIONS, (), store)
    operations = PolicyOperations(collector, store, settings)
    without = [row for row in result.repositories if not row.has_lifecycle_policy]
    previews = sorted(((row, operations.preview(row, scan_id=result.scan_id)) for row in without),
                      key=lambda pair: -pair[1].result.bytes_freed)
    labels = display_names(result.repositories)
    rows = [[labels[row.arn], str(sum(1 for d in p.result.decisions if d.action == "expire")), str(p.image_count),
             gib(p.result.bytes_freed), usd(p.monthly_savings_usd)] for row, p in previews[:10]]
    total_bytes = sum(p.result.bytes_freed for _, p in previews)
    total_usd = sum(p.monthly_savings_usd for _, p in previews)
    out.write(f"\nAdopting the base policy (untagged keep 1, latest keep 1, v* keep 9, any keep 20) on the "
              f"{len(without)} repositories without a policy would free {gib(total_bytes)} GB, "
              f"{usd(total_usd)}/month of {usd(sum(r.monthly_cost_usd for r in without))}/month:\n\n")
    out.write("\n".join(text_table(["repository", "expire", "of", "GB freed", "USD/month"], rows, right={1, 2, 3, 4})))
    if previews:
        row, best = previews[0]
        out.write(f"\n\nWhat it would expire in the first one (`ecr-cost-bot policy preview {row.repository}`):\n\n")
        out.write(preview_text(best.ref, best.result, best.image_count, best.monthly_savings_usd, best.source,
                               limit=12) + "\n")
