"""The bill beside the estimate: Cost Explorer in the report, the CUR per repository (local, S3, Athena), bad data."""
from __future__ import annotations

import calendar
import json
import urllib.request
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest

from bot.config import load_settings
from bot.core.billing import CostLine, service_bill, summarize_bill
from bot.errors import ConfigError
from bot.render.blocks import repository_detail
from bot.render.chart import chart_figure
from bot.sample import SampleRepository, blob, image
from bot.wiring import build
from tests.curgen import Item, aggregate, arn, ecr_usage, estate_items, write_cur
from tests.helpers.aws import ACCOUNT, BASE, load, repository, run_cli

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

TODAY = datetime.now(UTC).date()


def web() -> SampleRepository:
    images = [image(BASE + [blob(f"web-{n}", 4_000_000)], blob(f"wcfg-{n}", 300), (f"v{n}",), pushed_days_ago=5 + n)
              for n in range(3)]
    return SampleRepository("eu-west-1", "web", images, tags={"owner": "U0WEB1234"})


def scanned(capsys, monkeypatch) -> dict:
    """shop (us-east-1) and web (eu-west-1) in moto, scanned: the estimate the bill is set beside."""
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    load([repository(), web()])
    code, out, err = run_cli(capsys, "scan", "--format", "json")
    assert code == 0, err
    return {r["repository"]: r for r in json.loads(out)["repositories"]}


def monthly(row: dict) -> float:
    """The estimate: stored bytes at $0.10 per GB-month (2^30 bytes)."""
    return row["stored_bytes"] / 2**30 * 0.10


def month_days(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def expected_billing(items, estimate: dict, days: int) -> dict:
    """`billing --format json`, computed from the line items in plain Python."""
    start, end = TODAY - timedelta(days=days), TODAY - timedelta(days=1)
    usage = ecr_usage(items, start, end)
    present = sorted({i.day for i in usage})
    last7 = present[-7:]
    repos = {("shop", "us-east-1"): arn("shop"), ("web", "eu-west-1"): "web"}
    rows = []
    for (name, region), resource in repos.items():
        mine = [i for i in usage if i.resource_id == resource]
        storage = sum(i.cost for i in mine if i.day in last7 and "TimedStorage" in i.usage_type) / len(last7)
        estimate_daily = monthly(estimate[name]) / month_days(present[-1])
        rows.append({"repository": name, "account_id": ACCOUNT, "region": region,
                     "billed_usd": round(sum(i.cost for i in mine), 4), "billed_daily_usd": round(storage, 4),
                     "estimate_daily_usd": round(estimate_daily, 4),
                     "difference_pct": round((storage - estimate_daily) / estimate_daily * 100, 1)})
    rows.sort(key=lambda r: -r["billed_usd"])
    unmatched = sum(i.cost for i in usage if i.resource_id not in repos.values())
    return {"source": "cur", "currency": "USD", "period": {"start": start.isoformat(), "end": end.isoformat()},
            "repositories": rows, "unmatched_usd": round(unmatched, 4),
            "total_usd": round(sum(i.cost for i in usage), 4)}


def export_folder(tmp_path, items, time_zone=False):
    """An export as Data Exports writes it: Parquet parts and a metadata JSON file beside them."""
    folder = tmp_path / "cur" / "data" / "BILLING_PERIOD=2026-11"
    folder.mkdir(parents=True)
    half = len(items) // 2
    write_cur(folder / "part-0.snappy.parquet", items[:half], time_zone)
    write_cur(folder / "part-1.snappy.parquet", items[half:], time_zone)
    (tmp_path / "cur" / "metadata").mkdir()
    (tmp_path / "cur" / "metadata" / "Manifest.json").write_text('{"not": "parquet"}')
    return tmp_path / "cur"


def billing_json(capsys, *flags) -> tuple[dict, str]:
    code, out, err = run_cli(capsys, "billing", "--format", "json", *flags)
    assert code == 0, err
    return json.loads(out), err


# -- per repository from the CUR -----------------------------------------------------------------------------


def test_billing_per_repository_from_a_local_export(aws, capsys, monkeypatch, tmp_path):
    estimate = scanned(capsys, monkeypatch)
    items = estate_items(TODAY)
    monkeypatch.setenv("ECR_COST_CUR", str(export_folder(tmp_path, items)))
    doc, err = billing_json(capsys, "--days", "14")
    assert doc == expected_billing(items, estimate, 14)
    missing = [(TODAY - timedelta(days=n)).isoformat() for n in (9, 3)]
    assert f"no ECR line for 2 day(s): {missing[0]}, {missing[1]}" in err  # named, and the rest stands
    code, out, _ = run_cli(capsys, "billing", "--days", "14")
    assert code == 0 and "shop" in out and "unmatched" in out and f"{doc['total_usd']:,.2f}" in out


def test_billing_from_a_glob_and_from_s3_gives_the_same_json(aws, capsys, monkeypatch, tmp_path):
    estimate = scanned(capsys, monkeypatch)
    items = estate_items(TODAY)
    folder = export_folder(tmp_path, items, time_zone=True)
    monkeypatch.setenv("ECR_COST_CUR", str(folder / "data" / "*" / "*.parquet"))
    local, _ = billing_json(capsys)
    assert local == expected_billing(items, estimate, 30)

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="billing-exports")
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "billing-exports", f"cur2/ecr/{path.relative_to(folder)}")
    monkeypatch.setenv("ECR_COST_CUR", "s3://billing-exports/cur2/ecr")
    remote, _ = billing_json(capsys)
    assert remote == local


def athena_rows(items, start: date, end: date) -> list[dict]:
    header = ["day", "account_id", "region", "resource_id", "storage", "currency", "usd"]
    rows = [{"Data": [{"VarCharValue": h} for h in header]}]
    for (day, account, region, resource, storage, currency), usd in sorted(aggregate(items, start, end).items(),
                                                                           key=str):
        cells = [day.isoformat(), account, region, resource, str(storage).lower(), currency, repr(usd)]
        rows.append({"Data": [{"VarCharValue": c} if c is not None else {} for c in cells]})
    return rows


def seed(moto_server: str, path: str, body: dict) -> None:
    request = urllib.request.Request(f"{moto_server}/moto-api/static/{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(request).status == 201


def test_billing_through_athena_pages_the_results_and_gives_the_same_json(aws, moto_server, capsys, monkeypatch,
                                                                         tmp_path):
    estimate = scanned(capsys, monkeypatch)
    items = estate_items(TODAY)
    start = TODAY - timedelta(days=30)
    rows = athena_rows(items, start, TODAY - timedelta(days=1))
    seed(moto_server, "athena/query-results", {"region": "us-east-1", "results": [
        {"rows": rows, "column_info": [{"Name": c["VarCharValue"], "Type": "varchar"} for c in rows[0]["Data"]]}]})
    aws.max_page["GetQueryResults"] = 10  # Athena pages by MaxResults; moto does not
    monkeypatch.setenv("ECR_COST_CUR_ATHENA", "cur.ecr_export")
    monkeypatch.setenv("ECR_COST_ATHENA_WORKGROUP", "primary")
    monkeypatch.setenv("ECR_COST_ATHENA_OUTPUT", "s3://athena-results/ecr/")
    doc, _ = billing_json(capsys)
    assert doc == expected_billing(items, estimate, 30)
    assert aws.calls["StartQueryExecution"] == 1 and aws.calls["GetQueryResults"] == -(-len(rows) // 10) > 1
    athena = boto3.client("athena", region_name="us-east-1")
    [execution_id] = athena.list_query_executions()["QueryExecutionIds"]
    query = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
    assert '"cur"."ecr_export"' in query["Query"] and "line_item_product_code = 'AmazonECR'" in query["Query"]
    assert query["QueryExecutionContext"]["Database"] == "cur"
    again, _ = billing_json(capsys)  # the same UTC day: from the store, no second query
    assert again == doc and aws.calls["StartQueryExecution"] == 1


def test_athena_refusing_is_one_line_naming_the_permissions(aws, capsys, monkeypatch):
    scanned(capsys, monkeypatch)
    aws.fail["StartQueryExecution"] = ("AccessDeniedException", "not authorized to perform athena:StartQueryExecution")
    monkeypatch.setenv("ECR_COST_CUR_ATHENA", "cur.ecr_export")
    code, _, err = run_cli(capsys, "billing")
    assert code == 1 and "Athena refused" in err and "README" in err and "Traceback" not in err


def test_bad_data_is_named_and_the_rest_stands(aws, capsys, monkeypatch, tmp_path):
    scanned(capsys, monkeypatch)
    import pyarrow.parquet as pq

    items = estate_items(TODAY)
    write_cur(tmp_path / "full.parquet", items)
    table = pq.read_table(tmp_path / "full.parquet")
    pq.write_table(table.drop_columns(["line_item_resource_id"]), tmp_path / "no-ids.parquet")
    monkeypatch.setenv("ECR_COST_CUR", str(tmp_path / "no-ids.parquet"))
    code, _, err = run_cli(capsys, "billing")
    assert code == 1 and "lacks the column(s) line_item_resource_id" in err

    monkeypatch.setenv("ECR_COST_CUR", str(tmp_path / "nothing-here-*.parquet"))
    code, _, err = run_cli(capsys, "billing")
    assert code == 1 and "no Parquet file" in err

    old = [Item(TODAY - timedelta(days=200), "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"), 1.0)]
    write_cur(tmp_path / "old.parquet", old)
    monkeypatch.setenv("ECR_COST_CUR", str(tmp_path / "old.parquet"))
    doc, err = billing_json(capsys, "--days", "10")
    assert doc["repositories"] == [] and doc["total_usd"] == 0 and "has no ECR line items between" in err

    euros = [Item(TODAY - timedelta(days=n), "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"), 0.04,
                  currency="EUR") for n in (1, 2)]
    write_cur(tmp_path / "mixed.parquet", items + euros)
    monkeypatch.setenv("ECR_COST_CUR", str(tmp_path / "mixed.parquet"))
    doc, err = billing_json(capsys, "--days", "14")
    assert doc["currency"] == "USD" and "mixes currencies (EUR, USD)" in err and "EUR are left out" in err
    assert doc["total_usd"] == round(sum(i.cost for i in ecr_usage(items, TODAY - timedelta(days=14),
                                                                        TODAY - timedelta(days=1))), 4)


def test_billing_without_a_cur_and_bad_days_are_user_errors(aws, capsys, monkeypatch):
    code, _, err = run_cli(capsys, "billing")
    assert code == 1 and "ECR_COST_CUR" in err
    code, _, err = run_cli(capsys, "billing", "--days", "0")
    assert code == 2 and "--days" in err


def test_the_detail_shows_the_billed_cost_per_day_with_a_cur(aws, capsys, monkeypatch, tmp_path):
    estimate = scanned(capsys, monkeypatch)
    items = estate_items(TODAY)
    monkeypatch.setenv("ECR_COST_CUR", str(export_folder(tmp_path, items)))
    built = build(load_settings())
    try:
        scan = built.application.latest()
        row = next(r for r in scan.repositories if r.repository == "shop")
        view = built.application.view(scan, row)
    finally:
        built.close()
    last7 = sorted({i.day for i in ecr_usage(items, TODAY - timedelta(days=35), TODAY - timedelta(days=1))})[-7:]
    daily = sum(i.cost for i in items if i.day in last7 and i.resource_id == arn("shop") and i.line_type == "Usage"
                and "TimedStorage" in i.usage_type) / 7
    assert view.billed.billed_daily_usd == pytest.approx(daily)
    text = json.dumps(repository_detail(view))
    assert f"*Billed (CUR)* *${daily:,.2f}/day*" in text
    assert estimate["shop"]["monthly_cost_usd"] > 0


# -- Cost Explorer in the report ------------------------------------------------------------------------------


def ce_day(day: date, storage: float, transfer: float, unit: str = "USD") -> dict:
    def metrics(amount):
        return {"UnblendedCost": {"Amount": str(amount), "Unit": unit},
                "UsageQuantity": {"Amount": str(amount * 100), "Unit": "N/A"}}

    return {"TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()}, "Total": {},
            "Groups": [{"Keys": ["USE1-TimedStorage-ByteHrs"], "Metrics": metrics(storage * 0.75)},
                       {"Keys": ["EUW1-TimedStorage-ByteHrs"], "Metrics": metrics(storage * 0.25)},
                       {"Keys": ["USE1-DataTransfer-Out-Bytes"], "Metrics": metrics(transfer)}],
            "Estimated": day >= TODAY - timedelta(days=2)}


def test_the_report_carries_cost_explorer_once_a_day(aws, moto_server, capsys, monkeypatch):
    estimate = scanned(capsys, monkeypatch)
    storage = {TODAY - timedelta(days=n): 0.01 * n for n in range(1, 36) if n != 5}  # the 5th day back is missing
    days = sorted(storage)
    first, second = days[:20], days[20:]
    seed(moto_server, "ce/cost-and-usage-results", {"results": [  # two pages: NextPageToken is followed
        {"ResultsByTime": [ce_day(d, storage[d], 0.002) for d in first], "DimensionValueAttributes": [],
         "NextPageToken": "page-2"},
        {"ResultsByTime": [ce_day(d, storage[d], 0.002) for d in second], "DimensionValueAttributes": []}]})
    code, out, err = run_cli(capsys, "report", "--format", "json")
    assert code == 0, err
    billing = json.loads(out)["billing"]
    last7 = [TODAY - timedelta(days=n) for n in range(7, 0, -1)]
    previous7 = [TODAY - timedelta(days=n) for n in range(14, 7, -1)]
    yesterday = TODAY - timedelta(days=1)
    monthly_usd = sum(monthly(r) for r in estimate.values())
    assert set(billing) == {"source", "currency", "storage_daily", "storage_last_7_days_usd",
                            "storage_previous_7_days_usd", "other_last_7_days_usd", "estimate_daily_usd", "note"}
    assert billing["source"] == "cost-explorer" and billing["currency"] == "USD"
    assert billing["storage_daily"] == [{"date": d.isoformat(), "usd": round(storage[d], 4)}
                                        for d in previous7 + last7 if d in storage]
    assert billing["storage_last_7_days_usd"] == pytest.approx(sum(storage.get(d, 0) for d in last7), abs=1e-4)
    assert billing["storage_previous_7_days_usd"] == pytest.approx(sum(storage[d] for d in previous7), abs=1e-4)
    assert billing["other_last_7_days_usd"] == pytest.approx(0.002 * 6, abs=1e-4)
    assert billing["estimate_daily_usd"] == pytest.approx(monthly_usd / month_days(yesterday), abs=1e-4)
    assert (TODAY - timedelta(days=5)).isoformat() in billing["note"]  # the missing day, named
    assert "against the estimate; likely" in billing["note"]  # far off the estimate: the reasons
    assert aws.calls["GetCostAndUsage"] == 2
    code, out, _ = run_cli(capsys, "report")
    assert code == 0 and "Billed ECR storage (Cost Explorer)" in out and "likely reasons" in out
    assert aws.calls["GetCostAndUsage"] == 2  # cached for the day: each request costs $0.01
    request = boto3.client("ce", region_name="us-east-1")  # what moto recorded is what we asked for
    assert request.meta.region_name == "us-east-1"


def test_cost_explorer_denied_is_a_note_not_an_error(aws, capsys, monkeypatch, caplog):
    scanned(capsys, monkeypatch)
    aws.fail["GetCostAndUsage"] = ("AccessDeniedException", "User is not authorized to perform: ce:GetCostAndUsage")
    code, out, err = run_cli(capsys, "report", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["errors"] == [] and doc["partial"] is False
    assert doc["billing"]["source"] is None and "grant ce:GetCostAndUsage" in doc["billing"]["note"]
    assert doc["summary"]["repository_count"] == 2  # the rest of the report stands
    code, out, _ = run_cli(capsys, "report")
    assert out.count("ce:GetCostAndUsage") == 1


def test_billing_off_asks_nothing(aws, capsys, monkeypatch):
    scanned(capsys, monkeypatch)
    monkeypatch.setenv("ECR_COST_BILLING", "off")
    code, out, _ = run_cli(capsys, "report", "--format", "json")
    assert code == 0 and json.loads(out)["billing"]["source"] is None
    assert aws.calls["GetCostAndUsage"] == 0


def test_the_report_from_the_cur_gives_each_adoption_its_repository_before_and_after(aws, capsys, monkeypatch,
                                                                                  tmp_path):
    scanned(capsys, monkeypatch)
    adopted_day = TODAY - timedelta(days=8)
    items = [Item(TODAY - timedelta(days=n), "AmazonECR", "USE1-TimedStorage-ByteHrs", arn("shop"),
                  0.08 if TODAY - timedelta(days=n) < adopted_day + timedelta(days=2) else 0.02)
             for n in range(1, 30)]
    write_cur(tmp_path / "cur.parquet", items)
    monkeypatch.setenv("ECR_COST_CUR", str(tmp_path / "cur.parquet"))
    monkeypatch.setenv("ECR_COST_BILLING", "cur")
    code, _, err = run_cli(capsys, "policy", "apply", "shop", "--yes")
    assert code == 0, err
    from bot.store import Store
    store = Store(load_settings().db_path)  # the adoption happened 8 days ago
    adopted_at = datetime.combine(adopted_day, datetime.min.time(), tzinfo=UTC)
    store.db.execute("update decisions set at = ?", [adopted_at.isoformat()])
    store.db.execute("update scans set generated_at = ?", [(adopted_at - timedelta(days=1)).isoformat()])
    store.db.conn.commit()
    store.close()
    code, out, err = run_cli(capsys, "report", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["billing"]["source"] == "cur"
    [saving] = doc["realised_savings"]
    assert saving["billed_scope"] == "repository"
    assert saving["billed_daily_before_usd"] == pytest.approx(0.08) and saving["billed_daily_after_usd"] == 0.02


# -- the pure parts and configuration ----------------------------------------------------------------------------


def test_service_summary_counts_archive_as_storage_and_the_rest_as_other():
    today = date(2026, 11, 28)
    lines = [CostLine(today - timedelta(days=n), kind, amount, "USD") for n in range(1, 15)
             for kind, amount in (("USE1-TimedStorage-ByteHrs", 0.1), ("USE1-ArchiveTimedStorage-ByteHrs", 0.05),
                                  ("USE1-DataTransfer-Out-Bytes", 0.01))]
    summary = summarize_bill(service_bill(lines, "cost-explorer"), today, estimate_monthly_usd=4.5)
    assert summary.storage_last_7_days_usd == pytest.approx(7 * 0.15)
    assert summary.other_last_7_days_usd == pytest.approx(7 * 0.01)
    assert summary.estimate_daily_usd == pytest.approx(4.5 / 30)
    assert summary.difference_pct == pytest.approx(0) and summary.note is None
    far = summarize_bill(service_bill(lines, "cost-explorer"), today, estimate_monthly_usd=3.0)
    assert far.difference_pct == pytest.approx((0.15 - 0.1) / 0.1 * 100) and "replicated copies" in far.note


def test_the_chart_gains_the_billed_series():
    from bot.core.report import build_report
    from tests.helpers.report import BASE_POLICY as POLICY
    from tests.helpers.report import crafted

    current, previous, adopted = crafted()
    today = datetime.now(UTC).date()
    lines = [CostLine(today - timedelta(days=n), "USE1-TimedStorage-ByteHrs", 0.05, "USD") for n in range(1, 15)]
    billing = summarize_bill(service_bill(lines, "cost-explorer"), today, 1.5)
    report = build_report(current, previous, [adopted], {7: 0.4}, {}, POLICY, [], current.generated_at,
                          billing=billing)
    bars, trend, bill = chart_figure(report).axes
    assert bill.get_title() == "Billed ECR storage per day" and len(bill.patches) == 14
    assert bill.lines[0].get_ydata()[0] == pytest.approx(1.5 / month_days(today - timedelta(days=1)))


@pytest.mark.parametrize("env, message", [
    ({"ECR_COST_BILLING": "bill"}, "ECR_COST_BILLING: expected one of"),
    ({"ECR_COST_BILLING": "cur"}, "ECR_COST_BILLING: 'cur' needs ECR_COST_CUR"),
    ({"ECR_COST_CUR": "s3://B"}, "ECR_COST_CUR: expected s3://bucket/prefix"),
    ({"ECR_COST_CUR": "/x", "ECR_COST_CUR_ATHENA": "a.b"}, "ECR_COST_CUR: set either"),
    ({"ECR_COST_CUR_ATHENA": "just_a_table"}, "ECR_COST_CUR_ATHENA: expected database.table"),
    ({"ECR_COST_CUR_ATHENA": "a.b", "ECR_COST_ATHENA_WORKGROUP": "bad group"}, "ECR_COST_ATHENA_WORKGROUP:"),
    ({"ECR_COST_CUR_ATHENA": "a.b", "ECR_COST_ATHENA_OUTPUT": "/tmp/out"}, "ECR_COST_ATHENA_OUTPUT: expected"),
    ({"ECR_COST_ATHENA_OUTPUT": "s3://results/x/"}, "ECR_COST_ATHENA_OUTPUT: goes with ECR_COST_CUR_ATHENA"),
])
def test_billing_settings_are_validated(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(env)


def test_billing_settings_defaults():
    settings = load_settings({})
    assert settings.billing == "cost-explorer" and settings.cur is None and settings.cur_athena is None
    settings = load_settings({"ECR_COST_BILLING": "cur", "ECR_COST_CUR": "s3://billing-exports/cur2/ecr"})
    assert settings.billing == "cur" and settings.cur == "s3://billing-exports/cur2/ecr"


def test_the_cur_from_s3_is_read_object_by_object_and_leaves_no_file_behind(aws, tmp_path, monkeypatch):
    """Each object is downloaded to a temporary file, read by DuckDB, deleted: the sums across the objects (the same
    repository and day split over both parts) equal the local read's, and nothing is left in the temporary folder."""
    import tempfile

    import boto3

    from bot.aws.billing import CurReader
    from bot.aws.sessions import default_session_factory
    from bot.errors import BillingUnavailable

    items = estate_items(TODAY)
    folder = export_folder(tmp_path, items, time_zone=True)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="exports")
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "exports", f"cur2/{path.relative_to(folder)}")
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    start, end = TODAY - timedelta(days=30), TODAY
    factory = default_session_factory(region_name="us-east-1")
    remote = CurReader("s3://exports/cur2", factory).lines(start, end)
    local = CurReader(str(folder), factory).lines(start, end)
    keyed = lambda lines: {(x.day, x.account_id, x.region, x.resource_id, x.storage, x.currency): x.usd  # noqa: E731
                           for x in lines}
    assert len(remote) == len(local) > 0 and keyed(remote) == pytest.approx(keyed(local))
    assert [p.name for p in spare.iterdir()] in ([], ["ecr-cost-duckdb"])  # DuckDB's spill folder, if it made one
    assert not any(spare.rglob("*.parquet"))
    with pytest.raises(BillingUnavailable, match="no Parquet file at s3://exports/other"):
        CurReader("s3://exports/other", factory).lines(start, end)
    with pytest.raises(BillingUnavailable, match="cannot list s3://missing-bucket/cur2: .*s3:ListBucket"):
        CurReader("s3://missing-bucket/cur2", factory).lines(start, end)


def test_the_bill_covers_only_the_accounts_the_scan_covers(aws, capsys, monkeypatch, tmp_path):
    """An account left out of the scan is left out of the bill too: the two compare (a review found the bill of
    the whole organisation set beside the estimate of the scanned accounts)."""
    from tests.curgen import OTHER_ACCOUNT, Item, arn
    estimate = scanned(capsys, monkeypatch)
    items = estate_items(TODAY)
    items += [Item(TODAY - timedelta(days=n), "AmazonECR", "USE1-TimedStorage-ByteHrs",
                   arn("theirs", account=OTHER_ACCOUNT), 5.0, account=OTHER_ACCOUNT) for n in range(1, 15)]
    monkeypatch.setenv("ECR_COST_CUR", str(export_folder(tmp_path, items)))
    monkeypatch.setenv("ECR_COST_EXCLUDE_ACCOUNTS", OTHER_ACCOUNT)
    doc, _ = billing_json(capsys, "--days", "14")
    assert doc == expected_billing(estate_items(TODAY), estimate, 14)  # as if the other account's lines were not there

    from bot.aws.billing import CostExplorerReader
    request = CostExplorerReader(lambda role: None, ("111111111111",), (OTHER_ACCOUNT,)).request(TODAY, TODAY)
    assert request["Filter"] == {"And": [
        {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon EC2 Container Registry (ECR)"]}},
        {"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": ["111111111111"]}},
        {"Not": {"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": [OTHER_ACCOUNT]}}}]}
