"""CUR 2.0 line items for the tests, with the export's real column names, written as Parquet; and the expected
figures computed from the same rows in plain Python (not with the SQL under test)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"


@dataclass(frozen=True)
class Item:
    day: date
    product: str
    usage_type: str
    resource_id: str | None
    cost: float
    account: str = ACCOUNT
    region: str = "us-east-1"
    line_type: str = "Usage"
    currency: str = "USD"
    hour: int = 0


def arn(name: str, region: str = "us-east-1", account: str = ACCOUNT) -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


def estate_items(today: date, days: int = 21, missing: tuple[int, ...] = (3, 9)) -> list[Item]:
    """``days`` days ending yesterday, but for the days ``missing`` days ago (no line item at all on them):
    shop (ARN, two line items a day), web (a bare name, eu-west-1), shop's data transfer, a repository nobody scans,
    other services, an ECR tax line and a line of today (not complete)."""
    items = []
    for back in range(1, days + 1):
        if back in missing:
            continue
        day = today - timedelta(days=back)
        items += [
            Item(day, "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"), 0.03),
            Item(day, "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"), 0.02 + back / 1000, hour=12),
            Item(day, "AmazonECR", "EUW1-TimedStorage-ByteHrs", "web", 0.01, region="eu-west-1"),
            Item(day, "AmazonECR", "USE1-DataTransfer-Out-Bytes", arn("shop"), 0.004),
            Item(day, "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("gone"), 0.02),
            Item(day, "AmazonEC2", "BoxUsage:m5.large", "i-0abc1234", 2.3),
            Item(day, "AmazonS3", "TimedStorage-ByteHrs", "my-bucket", 0.7),
            Item(day, "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"), 0.5, line_type="Tax"),
        ]
    items.append(Item(today, "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"), 9.0))
    return items


def write_cur(path, items, time_zone: bool = False) -> None:
    """One Parquet file of a CUR 2.0 data export (resource IDs included)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamp = pa.timestamp("ms", tz="UTC") if time_zone else pa.timestamp("ms")

    def at(item: Item, extra_hours: int = 0) -> datetime:
        moment = datetime.combine(item.day, time(item.hour), tzinfo=UTC) + timedelta(hours=extra_hours)
        return moment if time_zone else moment.replace(tzinfo=None)

    columns = {
        "bill_billing_period_start_date": ([at(replace(i, day=i.day.replace(day=1), hour=0)) for i in items], stamp),
        "bill_payer_account_id": ([ACCOUNT for _ in items], pa.string()),
        "line_item_usage_account_id": ([i.account for i in items], pa.string()),
        "line_item_line_item_type": ([i.line_type for i in items], pa.string()),
        "line_item_usage_start_date": ([at(i) for i in items], stamp),
        "line_item_usage_end_date": ([at(i, 1) for i in items], stamp),
        "line_item_product_code": ([i.product for i in items], pa.string()),
        "line_item_usage_type": ([i.usage_type for i in items], pa.string()),
        "line_item_operation": (["Storage" for _ in items], pa.string()),
        "line_item_resource_id": ([i.resource_id for i in items], pa.string()),
        "line_item_usage_amount": ([i.cost * 10 for i in items], pa.float64()),
        "line_item_unblended_cost": ([i.cost for i in items], pa.float64()),
        "line_item_currency_code": ([i.currency for i in items], pa.string()),
        "product_region_code": ([i.region for i in items], pa.string()),
        "resource_tags": ([[("user_team", "shop")] for _ in items], pa.map_(pa.string(), pa.string())),
    }
    table = pa.table({name: pa.array(values, type=kind) for name, (values, kind) in columns.items()})
    pq.write_table(table, str(path))


def ecr_usage(items, start: date, end: date) -> list[Item]:
    """ECR usage of the days [start, end]: what the bill counts."""
    return [i for i in items if i.product == "AmazonECR" and i.line_type == "Usage" and start <= i.day <= end]


def aggregate(items, start: date, end: date) -> dict[tuple, float]:
    """(day, account, region, resource, storage, currency) -> USD: what the query returns, summed in Python."""
    sums: dict[tuple, float] = defaultdict(float)
    for i in ecr_usage(items, start, end):
        sums[(i.day, i.account, i.region, i.resource_id, i.usage_type.endswith("TimedStorage-ByteHrs"),
              i.currency)] += i.cost
    return dict(sums)
