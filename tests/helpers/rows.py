"""Scan rows and whole estates built in memory, for the pure tests (no AWS)."""
from __future__ import annotations

from bot.core.analysis import rank
from bot.core.models import RepositoryCost


def row(name, stored, region="us-east-1", account="123456789012", **extra) -> RepositoryCost:
    values = dict(repository=name, account_id=account, region=region,
                  arn=f"arn:aws:ecr:{region}:{account}:repository/{name}", image_count=3, tagged_image_count=2,
                  stored_bytes=stored, listed_bytes=stored * 2, monthly_cost_usd=stored / 2**30 * 0.1,
                  last_pushed_at=None, last_pulled_at=None, unused=False, has_lifecycle_policy=False,
                  lifecycle_policy=None, owners=(), tags={})
    values.update(extra)
    return RepositoryCost(**values)


def huge_estate(count: int = 10_000):
    name = "team-" + "x" * 190  # 200 characters, ECR's longest names are 256
    tags = {f"tag-{n}": "<!channel> *v*" for n in range(60)}
    return rank([row(f"{name}-{n:05d}", n * 1_000_000, owners=("U012AB3CD",), tags=tags) for n in range(count)])
