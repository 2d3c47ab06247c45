"""The CUR aggregation (`billing`, the report with ECR_COST_BILLING=cur) on a generated CUR 2.0 export of 10 million
line items, 2 million of them ECR's, against pandas, in the same run: from a local file and through S3.

    python bench/cur_bench.py --pandas-python /tmp/pandasvenv/bin/python [--rows 10000000] [--keep DIR]

Each contender runs as its own process and its peak RSS is its own ru_maxrss, read with os.wait4: the bench process
imports nothing heavy (Linux carries a parent's high-water mark into a vfork'd child), and moto's server runs in a
process of its own. The bot runs from this interpreter (an environment without pandas: sqlite-utils imports pandas
whenever it is installed, which would inflate the bot's figures); the pandas contenders from --pandas-python.

Why these baselines are what a good engineer would write:
- pandas-filters: `pandas.read_parquet(file, columns=[the 9 needed], filters=[ECR, Usage, the 35 days])`, then
  `groupby(...).sum()`. Passing the filters lets pyarrow skip row groups and drop rows before pandas sees them; anyone
  who knows read_parquet writes this, not a read of every row. This is the baseline the targets are set against.
- pandas-batches: the same filters over `pyarrow.parquet.ParquetFile.iter_batches` (one row group at a time), each
  batch grouped and the partial sums added: what the same engineer writes when memory matters.
- Through S3 (moto's server over HTTP, the same object for both): the bot's `CurReader("s3://...")` (each object
  downloaded to a temporary file, read by DuckDB, deleted) against `pandas.read_parquet` with the same filters over
  pyarrow's S3 filesystem (the pushdown still applies: only the row groups and columns needed are fetched).

Targets (against pandas-filters): local <= 0.5x the time and <= 0.2x the peak memory; S3 <= 1.0x and <= 0.25x.
Prints each one's work time, process wall time, peak RSS and the RSS its imports take, and checks that every
contender gives the same groups and total.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = 35
END = date(2026, 11, 28)  # exclusive: the 35 complete days before it
ACCOUNTS = ["123456789012", "210987654321", "333344445555"]
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
COLUMNS = ["line_item_usage_start_date", "line_item_usage_account_id", "product_region_code", "line_item_resource_id",
           "line_item_usage_type", "line_item_currency_code", "line_item_unblended_cost", "line_item_product_code",
           "line_item_line_item_type"]
GROUP = ["day", "line_item_usage_account_id", "product_region_code", "line_item_resource_id", "storage",
         "line_item_currency_code"]
BUCKET, KEY = "billing-exports", "cur2/data/BILLING_PERIOD=2026-11/part-0.snappy.parquet"


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


def _result(lines_or_grouped, started: float, imports_mb: float) -> dict:
    groups, total = lines_or_grouped
    return {"seconds": time.perf_counter() - started, "groups": groups, "total_usd": total, "imports_mb": imports_mb}


def contender_bot(location: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import duckdb  # noqa: F401 - imported before the baseline RSS is read, as the reader will

    from bot.aws.billing import CurReader
    from bot.aws.sessions import default_session_factory

    if "pandas" in sys.modules:
        raise SystemExit("the bot's environment imports pandas: run the bench from an environment without it")
    factory = default_session_factory(region_name="us-east-1")
    if location.startswith("s3://"):
        import boto3.s3.transfer  # noqa: F401 - what the S3 path imports
    imports_mb = _rss_mb()
    started = time.perf_counter()
    lines = CurReader(location, factory).lines(END - timedelta(days=DAYS), END)
    return _result((len(lines), sum(line.usd for line in lines)), started, imports_mb)


def _filters(pd):
    begin, end = pd.Timestamp(END - timedelta(days=DAYS)), pd.Timestamp(END)
    return [("line_item_product_code", "==", "AmazonECR"), ("line_item_line_item_type", "==", "Usage"),
            ("line_item_usage_start_date", ">=", begin), ("line_item_usage_start_date", "<", end)]


def _grouped(pd, frame):
    frame = frame.assign(day=frame["line_item_usage_start_date"].dt.floor("D"),
                         storage=frame["line_item_usage_type"].str.endswith("TimedStorage-ByteHrs"))
    return frame.groupby(GROUP, dropna=False)["line_item_unblended_cost"].sum()


def contender_pandas_filters(location: str) -> dict:
    import pandas as pd
    import pyarrow.parquet  # noqa: F401 - read_parquet's engine

    options = {}
    if location.startswith("s3://"):
        import pyarrow.fs

        endpoint = os.environ["AWS_ENDPOINT_URL"].split("://", 1)[1]
        options["filesystem"] = pyarrow.fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1")
        location = location[len("s3://"):]
    imports_mb = _rss_mb()
    started = time.perf_counter()
    frame = pd.read_parquet(location, columns=COLUMNS, filters=_filters(pd), **options)
    grouped = _grouped(pd, frame)
    return _result((int(len(grouped)), float(grouped.sum())), started, imports_mb)


def contender_pandas_batches(path: str) -> dict:
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    imports_mb = _rss_mb()
    started = time.perf_counter()
    begin, end = pd.Timestamp(END - timedelta(days=DAYS)), pd.Timestamp(END)
    partial = None
    for batch in pq.ParquetFile(path).iter_batches(columns=COLUMNS, batch_size=1_000_000):
        keep = pc.and_(pc.and_(pc.equal(batch["line_item_product_code"], "AmazonECR"),
                               pc.equal(batch["line_item_line_item_type"], "Usage")),
                       pc.and_(pc.greater_equal(batch["line_item_usage_start_date"], begin),
                               pc.less(batch["line_item_usage_start_date"], end)))
        grouped = _grouped(pd, batch.filter(keep).to_pandas())
        partial = grouped if partial is None else partial.add(grouped, fill_value=0)
    return _result((int(len(partial)), float(partial.sum())), started, imports_mb)


def upload(path: str) -> dict:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(path, BUCKET, KEY)
    s3.put_object(Bucket=BUCKET, Key="cur2/metadata/Manifest.json", Body=b"{}")
    return {}


CHILDREN = {"generate": None, "upload": upload, "bot": contender_bot, "pandas-filters": contender_pandas_filters,
            "pandas-batches": contender_pandas_batches}


def run_child(python: str, *args: str, env: dict | None = None) -> dict:
    """One process of this script; its own result and peak RSS (ru_maxrss, KiB on Linux)."""
    started = time.perf_counter()
    process = subprocess.Popen([python, __file__, *args], stdout=subprocess.PIPE, cwd=ROOT,
                               env={**os.environ, **(env or {})})
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{args} failed with status {status}")
    result = json.loads(out) if out.strip() else {}
    result["wall"] = time.perf_counter() - started
    result["peak_mb"] = usage.ru_maxrss / 1024
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's server in a process of its own (this process stays light), fake credentials for every contender."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).read()
            return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("moto's server did not start") from None
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--ecr-rows", type=int, default=2_000_000)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--keep", metavar="DIR", help="write (or reuse) the generated file in DIR")
    parser.add_argument("--pandas-python", default=sys.executable,
                        help="an interpreter with pandas and pyarrow for the baselines (default: this one)")
    parser.add_argument("--no-s3", action="store_true", help="the local file only")
    parser.add_argument("--child", nargs=2, metavar=("ROLE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        role, path = args.child
        if role == "generate":
            generate(path, args.rows, args.ecr_rows, args.repos)
            print("{}")
        else:
            print(json.dumps(CHILDREN[role](path)))
        return 0

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cur-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cur-{args.rows}-{args.ecr_rows}-{args.repos}.parquet"
    if not path.exists():
        made = run_child(args.pandas_python, "--rows", str(args.rows), "--ecr-rows", str(args.ecr_rows), "--repos",
                         str(args.repos), "--child", "generate", str(path))
        print(f"generated {args.rows:,} line items ({args.ecr_rows:,} ECR) in {made['wall']:.1f} s: "
              f"{path.stat().st_size / 2**20:,.0f} MB")
    results = {"bot local": run_child(sys.executable, "--child", "bot", str(path)),
               "pandas-filters local": run_child(args.pandas_python, "--child", "pandas-filters", str(path)),
               "pandas-batches local": run_child(args.pandas_python, "--child", "pandas-batches", str(path))}
    server = None
    try:
        if not args.no_s3:
            server, url = start_moto()
            env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
            run_child(sys.executable, "--child", "upload", str(path), env=env)
            location = f"s3://{BUCKET}/cur2/data/"
            results["bot S3"] = run_child(sys.executable, "--child", "bot", location, env=env)
            results["pandas-filters S3"] = run_child(args.pandas_python, "--child", "pandas-filters",
                                                     f"s3://{BUCKET}/{KEY}", env=env)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print(f"{'contender':<22}  {'wall s':>7}  {'work s':>7}  {'peak MB':>8}  {'imports MB':>10}  {'groups':>8}  "
          f"{'total USD':>12}")
    for name, r in results.items():
        print(f"{name:<22}  {r['wall']:7.2f}  {r['seconds']:7.2f}  {r['peak_mb']:8.0f}  {r['imports_mb']:10.0f}  "
              f"{r['groups']:8,}  {r['total_usd']:12.4f}")
    for where, time_target, memory_target in (("local", 0.5, 0.2), ("S3", 1.0, 0.25)):
        bot, pandas = results.get(f"bot {where}"), results.get(f"pandas-filters {where}")
        if bot is None or pandas is None:
            continue
        print(f"bot / pandas-filters, {where}: time {bot['seconds'] / pandas['seconds']:.2f}x (target <= "
              f"{time_target}; process wall {bot['wall'] / pandas['wall']:.2f}x), peak memory "
              f"{bot['peak_mb'] / pandas['peak_mb']:.2f}x (target <= {memory_target})")
    batches = results["pandas-batches local"]
    print(f"bot / pandas-batches, local: time {results['bot local']['seconds'] / batches['seconds']:.2f}x, peak memory "
          f"{results['bot local']['peak_mb'] / batches['peak_mb']:.2f}x")
    first = next(iter(results.values()))
    same = all(r["groups"] == first["groups"] and abs(r["total_usd"] - first["total_usd"]) < 1e-6 * max(
        1.0, first["total_usd"]) for r in results.values())
    print(f"same groups and total: {'yes' if same else 'NO'}")
    if not args.keep:
        path.unlink()
        folder.rmdir()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
