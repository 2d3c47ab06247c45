"""Where the bill comes from: Cost Explorer, a CUR 2.0 Parquet export (DuckDB) or the CUR in Athena.

Adapters only: each returns plain rows (bot.core.billing's CostLine and CurLine); the figures are computed in the core.
Sessions come from the factory passed in; nothing connects at import. DuckDB is an extra
(`pip install 'ecr-cost-bot[cur]'`), imported when a CUR is read.
"""
from __future__ import annotations

import glob
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from botocore.config import Config

from ..core.billing import CE_SERVICE, CUR_COLUMNS, STORAGE_SUFFIX, CostLine, CurLine, cost_explorer_lines
from ..errors import AwsAccessDenied, AwsError, BillingUnavailable, describe
from ..progress import StepClock
from .errors import translated, translating
from .sessions import SessionFactory

logger = logging.getLogger(__name__)
CE_REGION = "us-east-1"  # Cost Explorer's one endpoint
OPT_IN = "OptInRequired"  # Cost Explorer not enabled: as good as denied
ATHENA_PAGE = 1000  # GetQueryResults' largest page
ATHENA_TIMEOUT = 600.0  # seconds a query may run
_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=10, read_timeout=60)


def _client(session_factory: SessionFactory, service: str, region: str | None = None):
    """A client of the bot's own account whose errors are the AwsError family."""
    with translated(service):
        session = session_factory(None)
        return translating(session.client(service, region_name=region or session.region_name or CE_REGION,
                                          config=_CONFIG))


def _why(exc: AwsError) -> str:
    """AWS's answer ("Code: message"), or what kept the request from one."""
    return describe(exc) if exc.answered else exc.message


# -- Cost Explorer --------------------------------------------------------------------------------------------


class CostExplorerReader:
    def __init__(self, session_factory: SessionFactory, only_accounts: tuple[str, ...] = (),
                 exclude_accounts: tuple[str, ...] = ()):
        self._session_factory = session_factory
        self._only, self._exclude = tuple(only_accounts), tuple(exclude_accounts)

    @property
    def scope(self) -> str:
        """What the request covers beyond ECR (part of its cache key)."""
        return f"only={','.join(self._only)};exclude={','.join(self._exclude)}"

    def request(self, start: date, end: date) -> dict:
        """GetCostAndUsage's parameters for the days [start, end) (End is exclusive): ECR, in the accounts the
        scan covers (ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS), so the bill compares with the estimate."""
        service = {"Dimensions": {"Key": "SERVICE", "Values": [CE_SERVICE]}}
        narrowed: list[dict] = [service]
        if self._only:
            narrowed.append({"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": list(self._only)}})
        if self._exclude:
            narrowed.append({"Not": {"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": list(self._exclude)}}})
        return dict(TimePeriod={"Start": start.isoformat(), "End": end.isoformat()}, Granularity="DAILY",
                    Metrics=["UnblendedCost", "UsageQuantity"],
                    Filter=service if len(narrowed) == 1 else {"And": narrowed},
                    GroupBy=[{"Type": "DIMENSION", "Key": "USAGE_TYPE"}])

    def pages(self, start: date, end: date) -> list[dict]:
        """Every page of one GetCostAndUsage request. Raises BillingUnavailable on a refusal."""
        try:
            client = _client(self._session_factory, "ce", CE_REGION)
            params, pages = self.request(start, end), []
            while True:
                page = client.get_cost_and_usage(**params)
                pages.append({"ResultsByTime": page.get("ResultsByTime", [])})
                token = page.get("NextPageToken")
                if not token:
                    return pages
                params["NextPageToken"] = token
        except AwsError as exc:
            if isinstance(exc, AwsAccessDenied) or exc.code == OPT_IN or \
                    "not enabled for cost explorer" in exc.message.lower():
                raise BillingUnavailable("denied") from exc
            raise BillingUnavailable(f"Cost Explorer failed: {_why(exc)}") from exc

    @staticmethod
    def lines(pages: list[dict]) -> list[CostLine]:
        return cost_explorer_lines(pages)


# -- the CUR: Parquet files read and aggregated by DuckDB -------------------------------------------------------------

# one row per resource, account, region, UTC day, storage or not, currency: a few thousand rows for any CUR
_AGGREGATE = """
SELECT CAST(line_item_usage_start_date AS DATE) AS day,
       CAST(line_item_usage_account_id AS VARCHAR) AS account_id,
       CAST(product_region_code AS VARCHAR) AS region,
       CAST(line_item_resource_id AS VARCHAR) AS resource_id,
       line_item_usage_type LIKE '%{suffix}' AS storage,
       CAST(line_item_currency_code AS VARCHAR) AS currency,
       SUM(CAST(line_item_unblended_cost AS DOUBLE)) AS usd
FROM {table}
WHERE line_item_product_code = 'AmazonECR' AND line_item_line_item_type = 'Usage'
  AND line_item_usage_start_date >= {start} AND line_item_usage_start_date < {end}
GROUP BY 1, 2, 3, 4, 5, 6
ORDER BY day, account_id, region, resource_id
"""


def cur_query(table: str, start: str, end: str) -> str:
    return _AGGREGATE.format(suffix=STORAGE_SUFFIX, table=table, start=start, end=end)


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise BillingUnavailable("reading a CUR needs DuckDB: pip install 'ecr-cost-bot[cur]'") from None
    return duckdb


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _bounds(start: date, end: date, time_zone: bool) -> tuple[str, str]:
    if time_zone:
        return (f"TIMESTAMPTZ '{start.isoformat()} 00:00:00+00'", f"TIMESTAMPTZ '{end.isoformat()} 00:00:00+00'")
    return f"TIMESTAMP '{start.isoformat()}'", f"TIMESTAMP '{end.isoformat()}'"


class CurReader:
    """A CUR 2.0 data export in Parquet: a local path, a glob, or s3://bucket/prefix. Only the Parquet files are
    read (an export folder also holds its metadata JSON files).

    DuckDB's own Parquet reader reads every file (row group by row group, only the columns and row groups the query
    needs), so only the aggregate (a few thousand rows) reaches Python. Objects on S3 are downloaded one at a time to a
    temporary file with boto3 (the credential chain, AWS_ENDPOINT_URL), the next one while DuckDB reads the current
    one, and each is deleted once read: memory stays that of one local file, disk at most two objects."""

    def __init__(self, location: str, session_factory: SessionFactory, memory_limit: str = "128MB", threads: int = 2):
        self.location = location
        self._session_factory = session_factory
        self._memory_limit = memory_limit
        self._threads = threads

    def _local_files(self) -> list[str]:
        path = Path(self.location).expanduser()
        if path.is_dir():
            candidates = [str(p) for p in path.rglob("*") if p.is_file()]
        else:
            candidates = glob.glob(str(path), recursive=True)
        return sorted(c for c in candidates if _parquet(c))

    def _s3_objects(self, client) -> tuple[str, list[str]]:
        bucket, _, prefix = self.location[len("s3://"):].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        try:
            keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                           Prefix=prefix)
                    for item in page.get("Contents", []) if _parquet(item["Key"])]
        except AwsError as exc:
            if not exc.answered:
                raise BillingUnavailable(f"cannot list {self.location}: {exc.message}") from None
            raise BillingUnavailable(f"cannot list {self.location}: {describe(exc)} (the bot needs s3:ListBucket "
                                     f"and s3:GetObject on the export)") from None
        return bucket, sorted(keys)

    def files(self) -> list[str]:
        """The export's Parquet files, as `lines` finds them (what `doctor` checks). Raises BillingUnavailable."""
        if not self.location.startswith("s3://"):
            return self._local_files()
        try:
            client = _client(self._session_factory, "s3")
        except AwsError as exc:
            raise BillingUnavailable(f"cannot list {self.location}: {_why(exc)}") from None
        bucket, keys = self._s3_objects(client)
        return [f"s3://{bucket}/{key}" for key in keys]

    def lines(self, start: date, end: date) -> list[CurLine]:
        """The ECR usage of the days [start, end), summed by DuckDB (the file is never loaded into Python objects).
        Raises BillingUnavailable naming what is missing."""
        duckdb = _duckdb()
        # a small memory limit keeps the Parquet reader lean; an aggregate that outgrows it spills to disk
        connection = duckdb.connect(config={"memory_limit": self._memory_limit, "threads": self._threads,
                                            "temp_directory": os.path.join(tempfile.gettempdir(), "ecr-cost-duckdb")})
        try:
            connection.execute("SET TimeZone = 'UTC'")
            if self.location.startswith("s3://"):
                rows = self._remote_rows(connection, start, end)
            else:
                files = self._local_files()
                if not files:
                    raise BillingUnavailable(f"ECR_COST_CUR: no Parquet file at {self.location} (a CUR 2.0 data "
                                             f"export in Parquet format)")
                rows = connection.execute(self._query(connection, files, start, end)).fetchall()
        except (duckdb.Error, OSError, ValueError) as exc:
            raise BillingUnavailable(f"the CUR at {self.location} could not be read: {exc}") from None
        finally:
            connection.close()
        return [CurLine(day, account or "", region or "", resource, bool(storage), currency or "USD", float(usd or 0))
                for day, account, region, resource, storage, currency, usd in rows]

    def _query(self, connection, files: list[str], start: date, end: date) -> str:
        """The aggregate over these files, once their columns are checked."""
        table = f"read_parquet({_sql_list(files)}, union_by_name = true)"
        columns = {name: kind for name, kind, *_ in connection.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()}
        missing = [c for c in CUR_COLUMNS if c not in columns]
        if missing:
            raise BillingUnavailable(f"the CUR at {self.location} lacks the column(s) {', '.join(missing)} (a CUR "
                                     f"2.0 export with resource IDs is needed)")
        time_zone = "TIME ZONE" in columns["line_item_usage_start_date"].upper()
        return cur_query(table, *_bounds(start, end, time_zone))

    def _remote_rows(self, connection, start: date, end: date) -> list[tuple]:
        """Each object downloaded (the next while this one is read), aggregated into a small table, deleted; then the
        partial sums summed."""
        from concurrent.futures import ThreadPoolExecutor

        from boto3.s3.transfer import TransferConfig

        try:
            client = _client(self._session_factory, "s3")
        except AwsError as exc:
            raise BillingUnavailable(f"cannot list {self.location}: {_why(exc)}") from None
        bucket, keys = self._s3_objects(client)
        if not keys:
            raise BillingUnavailable(f"ECR_COST_CUR: no Parquet file at {self.location} (a CUR 2.0 data export in "
                                     f"Parquet format)")
        transfer = TransferConfig(max_concurrency=4, multipart_chunksize=8 * 2**20, max_io_queue=16)
        connection.execute("CREATE TEMP TABLE partial (day DATE, account_id VARCHAR, region VARCHAR, resource_id "
                           "VARCHAR, storage BOOLEAN, currency VARCHAR, usd DOUBLE)")
        with tempfile.TemporaryDirectory(prefix="ecr-cost-cur-") as folder, ThreadPoolExecutor(1) as downloader:
            def download(index: int) -> str:
                path = os.path.join(folder, f"{index}.parquet")
                try:
                    client.download_file(bucket, keys[index], path, Config=transfer)
                except AwsError as exc:
                    if not exc.answered:
                        raise BillingUnavailable(f"cannot read s3://{bucket}/{keys[index]}: {exc.message}") from None
                    raise BillingUnavailable(f"cannot read s3://{bucket}/{keys[index]}: {describe(exc)} (the "
                                             f"bot needs s3:GetObject on the export)") from None
                return path

            pending = downloader.submit(download, 0)
            steps = StepClock("CUR objects read from S3", len(keys))
            for index in range(len(keys)):
                path = pending.result()
                if index + 1 < len(keys):
                    pending = downloader.submit(download, index + 1)
                try:
                    connection.execute(f"INSERT INTO partial {self._query(connection, [path], start, end)}")
                finally:
                    os.remove(path)
                steps.step()
        return connection.execute(
            "SELECT day, account_id, region, resource_id, storage, currency, SUM(usd) FROM partial "
            "GROUP BY ALL ORDER BY day, account_id, region, resource_id").fetchall()


def _parquet(path: str) -> bool:
    return path.lower().endswith(".parquet")


# -- the CUR in Athena ------------------------------------------------------------------------------------------


class AthenaCurReader:
    """The same aggregation as an Athena query over the CUR table: StartQueryExecution, poll, GetQueryResults."""

    def __init__(self, table: str, session_factory: SessionFactory, workgroup: str | None = None,
                 output: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 timeout: float = ATHENA_TIMEOUT):
        self.database, self.table = table.split(".", 1)
        self._session_factory = session_factory
        self._workgroup = workgroup
        self._output = output
        self._sleep = sleep
        self._timeout = timeout

    def query(self, start: date, end: date) -> str:
        return cur_query(f'"{self.database}"."{self.table}"', f"TIMESTAMP '{start.isoformat()} 00:00:00'",
                         f"TIMESTAMP '{end.isoformat()} 00:00:00'")

    def lines(self, start: date, end: date) -> list[CurLine]:
        try:
            client = _client(self._session_factory, "athena")
            params = dict(QueryString=self.query(start, end), QueryExecutionContext={"Database": self.database})
            if self._workgroup:
                params["WorkGroup"] = self._workgroup
            if self._output:
                params["ResultConfiguration"] = {"OutputLocation": self._output}
            execution_id = client.start_query_execution(**params)["QueryExecutionId"]
            self._wait(client, execution_id)
            return [_athena_line(row) for row in self._rows(client, execution_id)]
        except AwsError as exc:
            if isinstance(exc, AwsAccessDenied) or exc.code == OPT_IN:
                raise BillingUnavailable(f"Athena refused the CUR query ({describe(exc)}): grant the Athena, "
                                         f"Glue and S3 permissions listed in the README") from None
            raise BillingUnavailable(f"Athena failed: {_why(exc)}") from None

    def _wait(self, client, execution_id: str) -> None:
        deadline, delay = time.monotonic() + self._timeout, 0.2
        while True:
            status = client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
            state = status.get("State")
            if state == "SUCCEEDED":
                return
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason") or state.lower()
                if "COLUMN_NOT_FOUND" in reason or "cannot be resolved" in reason:
                    raise BillingUnavailable(f"the CUR table {self.database}.{self.table} lacks a column: {reason} "
                                             f"(a CUR 2.0 export with resource IDs is needed)")
                raise BillingUnavailable(f"the Athena query over {self.database}.{self.table} {state.lower()}: "
                                         f"{reason}")
            if time.monotonic() > deadline:
                client.stop_query_execution(QueryExecutionId=execution_id)
                raise BillingUnavailable(f"the Athena query over {self.database}.{self.table} ran longer than "
                                         f"{self._timeout:.0f} s; it was stopped")
            self._sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _rows(client, execution_id: str) -> Iterator[list[str | None]]:
        params = dict(QueryExecutionId=execution_id, MaxResults=ATHENA_PAGE)
        first = True
        while True:
            page = client.get_query_results(**params)
            rows = page.get("ResultSet", {}).get("Rows", [])
            for i, row in enumerate(rows):
                if first and i == 0:
                    continue  # the header row
                yield [cell.get("VarCharValue") for cell in row.get("Data", [])]
            first = False
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token


def _athena_line(cells: list[str | None]) -> CurLine:
    day, account, region, resource, storage, currency, usd = (cells + [None] * 7)[:7]
    return CurLine(date.fromisoformat((day or "")[:10]), account or "", region or "", resource or None,
                   (storage or "").lower() == "true", currency or "USD", float(usd or 0))


@dataclass(frozen=True)
class BillingSources:
    """What wiring configured: Cost Explorer (the report's default) and the CUR (files or Athena), if any."""

    cost_explorer: CostExplorerReader | None = None
    cur: CurReader | AthenaCurReader | None = None
    cur_location: str | None = None  # ECR_COST_CUR or ECR_COST_CUR_ATHENA: part of the cache key


def billing_sources(settings, session_factory: SessionFactory) -> BillingSources:
    cur: CurReader | AthenaCurReader | None = None
    if settings.cur:
        cur = CurReader(settings.cur, session_factory)
    elif settings.cur_athena:
        cur = AthenaCurReader(settings.cur_athena, session_factory, settings.athena_workgroup, settings.athena_output)
    return BillingSources(CostExplorerReader(session_factory, settings.accounts, settings.exclude_accounts), cur,
                          settings.cur or settings.cur_athena)
