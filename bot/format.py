"""One way to write each kind of figure, for every renderer (CLI text, Slack, the report, the chart, the demo).

- money: ``$1,234.56/month`` in text (never ``/mo``); JSON keeps four decimals (``json_usd``);
- sizes: GB = 2^30 bytes (what AWS bills per), MB (2^20 bytes) below 1 GB, never raw byte counts in text;
- times: UTC ISO 8601 to the second with ``Z`` in JSON and the CLI; Slack ``<!date^…>`` tokens so each reader sees
  their own time zone; the report's period in ECR_COST_TIMEZONE;
- counts: "1 image", "2 repositories"; policy status lower case.

Pure: the standard library only, so the core, the renderers and the surfaces may all use it.
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

GIB = 2**30  # AWS bills ECR storage per GB-month of 2^30 bytes
MIB = 2**20

IRREGULAR = {"repository": "repositories", "policy": "policies", "day": "days", "entry": "entries"}


# -- money ---------------------------------------------------------------------------------------------

def usd(amount: float) -> str:
    """An amount: ``$1,234.56`` (``-$0.30`` when negative)."""
    cents = round(amount, 2) + 0.0  # + 0.0: never "-$0.00"
    return f"-${-cents:,.2f}" if cents < 0 else f"${cents:,.2f}"


def per_month(amount: float) -> str:
    """A monthly amount: ``$1,234.56/month``."""
    return f"{usd(amount)}/month"


def per_day(amount: float) -> str:
    return f"{usd(amount)}/day"


def signed(amount: float) -> str:
    """A change: ``+$1.20`` or ``-$0.30``."""
    return f"{'+' if round(amount, 2) >= 0 else '-'}{usd(abs(amount))}"


def json_usd(amount: float | None) -> float | None:
    """Money in JSON: four decimals."""
    return None if amount is None else round(amount, 4)


# -- sizes ---------------------------------------------------------------------------------------------

def size(byte_count: int) -> str:
    """``12.34 GB`` from 1 GB up, ``512 MB`` below (``8.5 MB`` below 10 MB); GB = 2^30 bytes, MB = 2^20."""
    if abs(byte_count) >= GIB:
        return f"{byte_count / GIB:,.2f} GB"
    if abs(byte_count) >= 10 * MIB:
        return f"{byte_count / MIB:,.0f} MB"
    return f"{byte_count / MIB:,.1f} MB"


def signed_size(byte_count: int) -> str:
    return ("+" if byte_count >= 0 else "-") + size(abs(byte_count))


# -- times ---------------------------------------------------------------------------------------------

def iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 to the second with ``Z``: ``2026-11-27T20:01:21Z`` (JSON and CLI)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slack_date(moment: datetime | None, never: str = "never") -> str:
    """A Slack date token: each reader sees their own time zone; the fallback is UTC."""
    if moment is None:
        return never
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} {{time}}|{utc:%Y-%m-%d %H:%M} UTC>"


def local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def local_time(moment: datetime, zone: str) -> str:
    """A moment in ECR_COST_TIMEZONE: ``2026-11-23 09:00 America/New_York`` (the report's period and generation)."""
    return f"{local(moment, zone):%Y-%m-%d %H:%M} {zone}"


def day(moment: date | datetime) -> str:
    """A calendar day: ``23 Nov 2026``."""
    return f"{moment:%d %b %Y}"


# -- counts and words ----------------------------------------------------------------------------------

def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 image``, ``2 images``, ``2 repositories``."""
    if count == 1:
        return f"{count:,} {noun}"
    return f"{count:,} {many or IRREGULAR.get(noun) or noun + 's'}"


def status(text: str) -> str:
    """A policy status, lower case everywhere: none, base, tuned (…), custom (N rules)."""
    return text.lower() if text.upper() == text else text
