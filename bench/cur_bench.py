"""The CUR aggregation (`billing`, the report with ECR_COST_BILLING=cur) on a generated CUR 2.0 export of 10 million
line items, 2 million of them ECR's, against a pandas read-and-groupby of the same file, in the same run.

    python bench/cur_bench.py [--rows 10000000] [--ecr-rows 2000000] [--repos 2000] [--keep DIR]

Needs the `bench` extra (pandas; DuckDB and pyarrow through `cur`). Generates one Parquet file (row groups of
1 million rows, snappy, the export's real column names; other services' rows, ECR storage and data transfer, resource
IDs as ARNs and as bare names, 35 days), written by a child process. Then each contender runs as its own process
(the bench process itself imports nothing heavy, so the children's peak RSS is their own) and aggregates the same
35 days of ECR usage per (day, account, region, resource, storage or not, currency):

- duckdb: `bot.billing_sources.CurReader.lines` on a local file — what the bot runs for ECR_COST_CUR=path: DuckDB's own
  Parquet reader (memory_limit 128MB, spilling to disk beyond it; 2 threads), projection and filters pushed down;
- duckdb-arrow: the same with ``via_arrow`` — the bot's path for s3:// exports: pyarrow's dataset scanner streaming
  record batches into DuckDB (here over the local file, so the network is not measured);
- pandas: `pandas.read_parquet(file, columns=[the 9 columns it needs])`, the same filter, `groupby(...).sum()`:
  the usual way to do it in Python.

Prints each one's time (the work alone, and the whole process with its imports), peak RSS (ru_maxrss of the child) and
the RSS above what its imports take, the ratios (targets: DuckDB at most half the
baseline's time and a tenth of its memory) and checks that both give the same total and number of groups.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = 35
END = date(2026, 11, 28)  # exclusive: the 35 complete days before it
ACCOUNTS = ["123456789012", "210987654321", "333344445555"]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
COLUMNS = ["line_item_usage_start_date", "line_item_usage_account_id", "product_region_code", "line_item_resource_id",
           "line_item_usage_type", "line_item_currency_code", "line_item_unblended_cost", "line_item_product_code",
           "line_item_line_item_type"]


def generate(path: str, rows: int, ecr_rows: int, repos: int, chunk: int = 1_000_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    start = np.datetime64(END - timedelta(days=DAYS), "ms")
    repo_ids = np.array([f"arn:aws:ecr:{REGIONS[i % 3]}:{ACCOUNTS[i % 3]}:repository/team-{i % 40}/service-{i}"
                         if i % 5 else f"service-{i}" for i in range(repos)], dtype=object)
    other_ids = np.array([f"i-{i:017x}" for i in range(5000)] + [f"bucket-{i}" for i in range(500)], dtype=object)
    products = np.array(["AmazonEC2", "AmazonS3", "AmazonRDS", "AWSLambda", "AmazonCloudWatch"], dtype=object)
    ecr_types = np.array(["USE1-TimedStorage-ByteHrs", "EUW1-TimedStorage-ByteHrs", "APS2-TimedStorage-ByteHrs",
                          "USE1-DataTransfer-Out-Bytes", "USE1-DataTransfer-Regional-Bytes"], dtype=object)
    other_types = np.array(["BoxUsage:m5.large", "TimedStorage-ByteHrs", "Requests-Tier1", "EBS:VolumeUsage.gp3",
                            "Lambda-GB-Second"], dtype=object)
    line_types = np.array(["Usage"] * 18 + ["Tax", "Credit"], dtype=object)
    stamp = pa.timestamp("ms")
    schema = pa.schema([("bill_payer_account_id", pa.string()), ("line_item_usage_account_id", pa.string()),
                        ("line_item_line_item_type", pa.string()), ("line_item_usage_start_date", stamp),
                        ("line_item_usage_end_date", stamp), ("line_item_product_code", pa.string()),
                        ("line_item_usage_type", pa.string()), ("line_item_resource_id", pa.string()),
                        ("line_item_usage_amount", pa.float64()), ("line_item_unblended_cost", pa.float64()),
                        ("line_item_currency_code", pa.string()), ("product_region_code", pa.string())])
    ecr_every = rows / ecr_rows
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for offset in range(0, rows, chunk):
            n = min(chunk, rows - offset)
            index = np.arange(offset, offset + n)
            is_ecr = (index % round(ecr_every)) == 0
            repo = rng.integers(0, repos, n)
            hours = rng.integers(0, DAYS * 24, n)
            starts = start + hours.astype("timedelta64[h]")
            account = np.array(ACCOUNTS, dtype=object)[repo % 3]
            region = np.array(REGIONS, dtype=object)[repo % 3]
            columns = {
                "bill_payer_account_id": np.full(n, ACCOUNTS[0], dtype=object),
                "line_item_usage_account_id": account,
                "line_item_line_item_type": line_types[rng.integers(0, len(line_types), n)],
                "line_item_usage_start_date": starts,
                "line_item_usage_end_date": starts + np.timedelta64(1, "h"),
                "line_item_product_code": np.where(is_ecr, "AmazonECR", products[rng.integers(0, 5, n)]),
                "line_item_usage_type": np.where(is_ecr, ecr_types[rng.integers(0, 5, n)],
                                                 other_types[rng.integers(0, 5, n)]),
                "line_item_resource_id": np.where(is_ecr, repo_ids[repo], other_ids[rng.integers(0, 5500, n)]),
                "line_item_usage_amount": rng.random(n) * 1e9,
                "line_item_unblended_cost": np.round(rng.random(n) * 0.01, 10),
                "line_item_currency_code": np.full(n, "USD", dtype=object),
                "product_region_code": region,
            }
            writer.write_table(pa.table({k: pa.array(v, type=schema.field(k).type) for k, v in columns.items()},
                                        schema=schema))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def contender_duckdb(path: str, via_arrow: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    import duckdb  # noqa: F401 - imported before the baseline RSS is read, as the reader will
    from bot.billing_sources import CurReader
    if via_arrow:
        import pyarrow.dataset  # noqa: F401

    imports_mb = _rss_mb()
    started = time.perf_counter()
    lines = CurReader(path, session_factory=lambda role: None, via_arrow=via_arrow).lines(END - timedelta(days=DAYS),
                                                                                           END)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "groups": len(lines), "total_usd": sum(line.usd for line in lines),
            "imports_mb": imports_mb}


def contender_pandas(path: str) -> dict:
    import pandas as pd
    import pyarrow.parquet  # noqa: F401 - read_parquet's engine

    imports_mb = _rss_mb()
    started = time.perf_counter()
    frame = pd.read_parquet(path, columns=COLUMNS)
    begin, end = pd.Timestamp(END - timedelta(days=DAYS)), pd.Timestamp(END)
    when = frame["line_item_usage_start_date"]
    ecr = frame[(frame["line_item_product_code"] == "AmazonECR") & (frame["line_item_line_item_type"] == "Usage")
                & (when >= begin) & (when < end)].copy()
    ecr["day"] = ecr["line_item_usage_start_date"].dt.floor("D")
    ecr["storage"] = ecr["line_item_usage_type"].str.endswith("TimedStorage-ByteHrs")
    grouped = ecr.groupby(["day", "line_item_usage_account_id", "product_region_code", "line_item_resource_id",
                           "storage", "line_item_currency_code"], dropna=False)["line_item_unblended_cost"].sum()
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "groups": int(len(grouped)), "total_usd": float(grouped.sum()),
            "imports_mb": imports_mb}


def run_child(*args: str) -> dict:
    """One process of this script; its own result and peak RSS (ru_maxrss, KiB on Linux)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, cwd=ROOT)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{args[0]} failed with status {status}")
    result = json.loads(out) if out.strip() else {}
    result["wall"] = time.perf_counter() - started
    result["peak_mb"] = usage.ru_maxrss / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--ecr-rows", type=int, default=2_000_000)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--keep", metavar="DIR", help="write (or reuse) the generated file in DIR")
    parser.add_argument("--child", nargs=2, metavar=("ROLE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        role, path = args.child
        if role == "generate":
            generate(path, args.rows, args.ecr_rows, args.repos)
            print("{}")
        else:
            work = {"duckdb": contender_duckdb, "duckdb-arrow": lambda p: contender_duckdb(p, via_arrow=True),
                    "pandas": contender_pandas}[role]
            print(json.dumps(work(path)))
        return 0

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cur-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cur-{args.rows}-{args.ecr_rows}-{args.repos}.parquet"
    if not path.exists():
        made = run_child("--rows", str(args.rows), "--ecr-rows", str(args.ecr_rows), "--repos", str(args.repos),
                         "--child", "generate", str(path))
        print(f"generated {args.rows:,} line items ({args.ecr_rows:,} ECR) in {made['wall']:.1f} s: "
              f"{path.stat().st_size / 2**20:,.0f} MB")
    results = {name: run_child("--child", name, str(path)) for name in ("duckdb", "duckdb-arrow", "pandas")}
    print(f"{'contender':<12}  {'wall s':>7}  {'work s':>7}  {'peak MB':>8}  {'imports MB':>10}  {'work MB':>8}  "
          f"{'groups':>8}  {'total USD':>12}")
    for name, r in results.items():
        r["work_mb"] = r["peak_mb"] - r["imports_mb"]
        print(f"{name:<12}  {r['wall']:7.2f}  {r['seconds']:7.2f}  {r['peak_mb']:8.0f}  {r['imports_mb']:10.0f}  "
              f"{r['work_mb']:8.0f}  {r['groups']:8,}  {r['total_usd']:12.4f}")
    pandas = results["pandas"]
    for name in ("duckdb", "duckdb-arrow"):
        r = results[name]
        print(f"{name} / pandas: time {r['seconds'] / pandas['seconds']:.2f}x (target <= 0.5; process wall "
              f"{r['wall'] / pandas['wall']:.2f}x), peak memory {r['peak_mb'] / pandas['peak_mb']:.3f}x (target <= 0.1;"
              f" above the imports {r['work_mb'] / pandas['work_mb']:.3f}x)")
    same = all(r["groups"] == pandas["groups"] and abs(r["total_usd"] - pandas["total_usd"]) < 1e-6 * max(
        1.0, pandas["total_usd"]) for r in results.values())
    print(f"same groups and total: {'yes' if same else 'NO'}")
    if not args.keep:
        path.unlink()
        folder.rmdir()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
