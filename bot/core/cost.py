"""Cost model: what a repository really stores (each blob once), what it costs, who owns it."""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from .models import SLACK_USER_ID, Image, Manifest, RepositoryCost, RepositoryInventory

GIB = 2**30

INDEX_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
})
IMAGE_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
})
SCHEMA1_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
ACCEPTED_MEDIA_TYPES = sorted(INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES | SCHEMA1_MEDIA_TYPES)

_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def parse_manifest(digest: str, media_type: str | None, text: str) -> Manifest:
    """Reads the blobs (or children) out of a manifest's text. Never raises."""
    try:
        doc = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return Manifest(digest, media_type, problem=f"manifest {digest} is not valid JSON")
    if not isinstance(doc, dict):
        return Manifest(digest, media_type, problem=f"manifest {digest} is not a JSON object")
    declared = doc.get("mediaType")
    media_type = declared if isinstance(declared, str) and declared else media_type
    if doc.get("schemaVersion") == 1 or media_type in SCHEMA1_MEDIA_TYPES:
        return Manifest(digest, media_type,
                        problem=f"manifest {digest} is Docker schema 1, which records no layer sizes")
    try:
        if "manifests" in doc or media_type in INDEX_MEDIA_TYPES:
            children = tuple(str(entry["digest"]) for entry in doc.get("manifests", []))
            return Manifest(digest, media_type, children=children)
        descriptors = [doc["config"], *doc.get("layers", [])] if "config" in doc else doc["layers"]
        blobs = tuple((str(d["digest"]), _size(d["size"])) for d in descriptors)
    except (KeyError, TypeError, ValueError) as exc:
        return Manifest(digest, media_type,
                        problem=f"manifest {digest} has no readable layer list ({exc.__class__.__name__}: {exc})")
    return Manifest(digest, media_type, blobs=blobs)


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"bad size {value!r}")
    return value


def missing_children(manifests: Mapping[str, Manifest]) -> set[str]:
    """Digests that indexes in ``manifests`` point at but that are not loaded yet."""
    return {child for m in manifests.values() for child in m.children if child not in manifests}


def reachable_manifests(digests: Iterable[str],
                        load: Callable[[set[str]], Mapping[str, Manifest]]) -> dict[str, Manifest]:
    """The manifests of ``digests`` and, through indexes, of their children; each digest asked for once."""
    manifests: dict[str, Manifest] = {}
    asked: set[str] = set()
    wanted = set(digests)
    while wanted:
        asked |= wanted
        manifests.update(load(wanted))
        wanted = missing_children(manifests) - asked
    return manifests


def unique_blobs(images: Iterable[Image], manifests: Mapping[str, Manifest]) -> tuple[dict[str, int], list[Image]]:
    """Blob digest -> size over every image (indexes resolved to their children), each blob once.

    Also returns the images whose blobs could not be known (manifest missing or unreadable).
    """
    blobs: dict[str, int] = {}
    unknown: list[Image] = []
    seen: set[str] = set()
    for image in images:
        if not _collect(image.digest, manifests, blobs, seen):
            unknown.append(image)
    return blobs, unknown


def _collect(digest: str, manifests: Mapping[str, Manifest], blobs: dict[str, int], seen: set[str]) -> bool:
    if digest in seen:
        return True
    manifest = manifests.get(digest)
    if manifest is None or manifest.problem:
        return False
    seen.add(digest)
    for blob_digest, size in manifest.blobs:
        blobs[blob_digest] = size
    # an index is known when all of its children are
    return all([_collect(child, manifests, blobs, seen) for child in manifest.children])


def image_manifests(digest: str, manifests: Mapping[str, Manifest]) -> list[Manifest] | None:
    """The image manifests ``digest`` stands for: itself, or (through an index) its children, each once, in order.
    None when one of them is missing or unreadable."""
    found: list[Manifest] = []
    seen: set[str] = set()
    stack = [digest]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        manifest = manifests.get(current)
        if manifest is None or manifest.problem:
            return None
        if manifest.children:
            stack.extend(reversed(manifest.children))
        elif manifest.blobs:
            found.append(manifest)
    return found


def stored_bytes(images: Iterable[Image], manifests: Mapping[str, Manifest]) -> int:
    """Bytes the repository stores: unique layer + config blobs, plus imageSizeInBytes of images
    whose manifest is unknown (the best estimate there is for them)."""
    blobs, unknown = unique_blobs(images, manifests)
    return sum(blobs.values()) + sum(image.listed_bytes for image in unknown)


def monthly_cost(byte_count: int, price_per_gb_month: float) -> float:
    return byte_count / GIB * price_per_gb_month


def parse_owners(value: str | None) -> tuple[tuple[str, ...], list[str]]:
    """Owner tag value -> (Slack user IDs and emails, problems). Separators: spaces and '+'."""
    if not value:
        return (), []
    owners: list[str] = []
    problems: list[str] = []
    for token in re.split(r"[\s+]+", value.strip()):
        if not token:
            continue
        if SLACK_USER_ID.match(token) or _EMAIL.match(token):
            if token not in owners:
                owners.append(sys.intern(token))  # one string per owner across the ranking
        else:
            problems.append(f"{token!r} is neither a Slack user ID (U…/W…) nor an email address")
    return tuple(owners), problems


def owner_tag_value(tags: Mapping[str, str], owner_tag: str) -> str | None:
    """The owner tag, matched without regard to case ("Owner" and "owner" both count)."""
    if owner_tag in tags:
        return tags[owner_tag]
    wanted = owner_tag.lower()
    return next((value for key, value in tags.items() if key.lower() == wanted), None)


def price_repository(inventory: RepositoryInventory, *, price_per_gb_month: float, unused_days: int, owner_tag: str,
                     now: datetime, account_name: str | None = None) -> tuple[RepositoryCost, list[str]]:
    """A repository's ranking row, and the problems worth telling its owners about. The row is held for the whole
    scan: the text that repeats across an estate (tags, an adopted policy) is one string shared by every row."""
    images = inventory.images
    stored = stored_bytes(images, inventory.manifests)
    owners, owner_problems = parse_owners(owner_tag_value(inventory.tags, owner_tag))
    last_pushed = max((i.pushed_at for i in images if i.pushed_at), default=None)
    last_pulled = max((i.last_pulled_at for i in images if i.last_pulled_at), default=None)
    # an empty repository has only its creation date to go by
    activity = (last_pushed, last_pulled) if images else (inventory.created_at,)
    last_activity = max((t for t in activity if t), default=None)
    unused = last_activity is not None and now - last_activity > timedelta(days=unused_days)
    ref = inventory.ref
    row = RepositoryCost(
        repository=ref.name, account_id=ref.account_id, region=ref.region, arn=ref.arn,
        image_count=len(images),
        tagged_image_count=sum(1 for i in images if i.tags),
        stored_bytes=stored,
        listed_bytes=sum(i.listed_bytes for i in images),
        monthly_cost_usd=monthly_cost(stored, price_per_gb_month),
        last_pushed_at=last_pushed, last_pulled_at=last_pulled,
        unused=unused,
        has_lifecycle_policy=inventory.lifecycle_policy is not None,
        lifecycle_policy=None if inventory.lifecycle_policy is None else sys.intern(inventory.lifecycle_policy),
        owners=owners,
        tags={sys.intern(key): sys.intern(value) for key, value in inventory.tags.items()},
        account_name=account_name,
        created_at=inventory.created_at,
    )
    return row, [f"owner tag {owner_tag!r}: {p}" for p in owner_problems]
