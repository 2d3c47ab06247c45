"""The sweep: which images nobody has pulled for N days may go, and when archiving would save anything. Pure.

ECR's lifecycle API refuses ``sinceImagePulled`` with ``expire``; the bot runs that rule itself, for repositories
whose owners opted in (the repository tag ``ecr-cost-expire-unpulled-days`` = N). A candidate is an image whose
last recorded pull (its push, when never pulled) is more than N days old, and that is not in use, not pinned by
the bot, not the repository's newest image, and not part of an index family of which anything is kept: an index
and its children go together or not at all.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from .cost import GIB, stored_bytes
from .inuse import is_pin
from .lifecycle import ARCHIVE_MINIMUM_DAYS
from .models import Image, Manifest

SWEEP_TAG = "ecr-cost-expire-unpulled-days"
MIN_DAYS, MAX_DAYS = 1, 3650
ARCHIVE_TIER_BYTES = 150 * 1024 * GIB  # archive storage costs what standard does below 150 TB a month
ARCHIVE_RESTORE_USD_PER_GB = 0.03


def parse_days(value: object) -> tuple[int | None, str | None]:
    """(N, None) for a valid opt-in value (a whole number 1..3650), else (None, why)."""
    text = str(value).strip() if value is not None else ""
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses (AWS tag values allow any Unicode digit)
    if not (text.isascii() and text.isdigit()) or not MIN_DAYS <= int(text) <= MAX_DAYS:
        return None, f"{SWEEP_TAG} must be a whole number of days from {MIN_DAYS} to {MAX_DAYS}, not {text!r}"
    return int(text), None


def last_activity(image: Image) -> datetime | None:
    """The last recorded pull, or the push when the image was never pulled."""
    return image.last_pulled_at or image.pushed_at


@dataclass
class SweepPlan:
    candidates: list[Image] = field(default_factory=list)  # oldest activity first; families kept together
    kept_in_use: list[str] = field(default_factory=list)  # idle for N days, yet in use: kept
    kept_pinned: list[str] = field(default_factory=list)
    kept_newest: list[str] = field(default_factory=list)
    kept_family: list[str] = field(default_factory=list)  # idle, but its index (or a sibling) is kept

    @property
    def digests(self) -> list[str]:
        return [i.digest for i in self.candidates]


def _families(images: Sequence[Image], manifests: Mapping[str, Manifest]) -> dict[str, frozenset[str]]:
    """Digest -> every digest held in the repository that must go with it (an index, its children, and the
    other indexes that share a child)."""
    held = {i.digest for i in images}
    parent: dict[str, str] = {d: d for d in held}

    def root(d: str) -> str:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    for digest in held:
        manifest = manifests.get(digest)
        for child in (manifest.children if manifest else ()):
            if child in held:
                parent[root(child)] = root(digest)
    groups: dict[str, set[str]] = {}
    for digest in held:
        groups.setdefault(root(digest), set()).add(digest)
    return {d: frozenset(groups[root(d)]) for d in held}


def plan(images: Sequence[Image], manifests: Mapping[str, Manifest], days: int, now: datetime,
         in_use: Iterable[str]) -> SweepPlan:
    """What the sweep may delete in one repository now: ``in_use`` is every digest in use there (runtimes and
    recent pulls, already resolved to indexes and their children)."""
    in_use = set(in_use)
    since = now - timedelta(days=days)
    found = SweepPlan()
    children = {c for i in images for c in (manifests[i.digest].children if i.digest in manifests else ())}
    tops = [i for i in images if i.digest not in children and i.pushed_at is not None]
    newest = max(tops or [i for i in images if i.pushed_at is not None],
                 key=lambda i: cast(datetime, i.pushed_at), default=None)  # None filtered out above
    families = _families(images, manifests)
    idle: dict[str, Image] = {}
    kept: set[str] = set()
    for image in images:
        activity = last_activity(image)
        if activity is None or activity >= since or image.status != "ACTIVE":
            kept.add(image.digest)  # recent, or of unknown age, or archived (ECR's own rules govern those)
            continue
        if image.digest in in_use:
            found.kept_in_use.append(image.digest)
        elif any(is_pin(t) for t in image.tags):
            found.kept_pinned.append(image.digest)
        elif newest is not None and image.digest in families[newest.digest]:
            found.kept_newest.append(image.digest)
        else:
            idle[image.digest] = image
            continue
        kept.add(image.digest)
    for digest in list(idle):
        if families[digest] & kept:
            found.kept_family.append(digest)
            del idle[digest]
    found.candidates = sorted(idle.values(), key=lambda i: (last_activity(i), i.digest))
    return found


def whole_families(chosen: Iterable[str], images: Sequence[Image], manifests: Mapping[str, Manifest]) -> set[str]:
    """Of ``chosen``, the digests whose whole family (among ``images``) is chosen too."""
    chosen = set(chosen)
    families = _families(images, manifests)
    return {d for d in chosen if d in families and families[d] <= chosen}


def capped(candidates: Sequence[Image], manifests: Mapping[str, Manifest], limit: int) -> list[Image]:
    """At most ``limit`` images, oldest activity first, whole families only (an index never without its children)."""
    families = _families(candidates, manifests)
    chosen: list[Image] = []
    taken: set[str] = set()
    by_digest = {i.digest: i for i in candidates}
    for image in candidates:
        if image.digest in taken:
            continue
        family = families[image.digest]
        if len(taken) + len(family) > limit:
            continue
        taken |= family
        chosen += [by_digest[d] for d in sorted(family, key=lambda d: (last_activity(by_digest[d]), d))]
    return chosen


def deletion_order(images: Sequence[Image], manifests: Mapping[str, Manifest]) -> tuple[list[str], list[str]]:
    """(indexes, the rest): indexes are deleted first, so that no child is refused as still referenced."""
    indexes = [i.digest for i in images if i.digest in manifests and manifests[i.digest].children]
    return indexes, [i.digest for i in images if i.digest not in set(indexes)]


def freed_bytes(images: Sequence[Image], going: Iterable[str], manifests: Mapping[str, Manifest]) -> int:
    """The bytes only the ``going`` images hold (layers shared with a kept image stay)."""
    going = set(going)
    return stored_bytes(images, manifests) - stored_bytes([i for i in images if i.digest not in going], manifests)


# -- archiving: when it would save anything -------------------------------------------------------

@dataclass(frozen=True)
class ArchiveEconomics:
    estate_bytes: int
    saves: bool  # only above the 150 TB tier does archive storage cost less than standard storage
    text: str


def archive_economics(estate_bytes: int) -> ArchiveEconomics:
    """The note the Adjust dialog and `policy preview` show beside any archiving choice."""
    tb = estate_bytes / (1024 * GIB)
    terms = (f"archived images are billed {ARCHIVE_MINIMUM_DAYS} days at least and cost "
             f"${ARCHIVE_RESTORE_USD_PER_GB:.2f}/GB to restore")
    if estate_bytes <= ARCHIVE_TIER_BYTES:
        return ArchiveEconomics(estate_bytes, False, (
            f"Archiving would not save money here: the estate stores {tb:,.2f} TB, below the 150 TB a month under "
            f"which archive storage costs the same as standard storage, and {terms}. Delete what nobody pulls "
            f"instead (the bot's sweep: {SWEEP_TAG}), or leave the images be."))
    return ArchiveEconomics(estate_bytes, True, (
        f"Archiving can save money: the estate stores {tb:,.2f} TB, above the 150 TB tier where archive storage "
        f"costs less than standard storage; {terms}, so archive only images nobody will pull for months."))
