"""Where images run, resolved to the digests in our inventory, and how a policy is made to keep them. Pure.

Runtimes (ECS, Lambda, Kubernetes) report image references: `repo:tag`, `repo@sha256:…`, sometimes both.
A reference names its repository's account and region in its URI, so a task in account B that runs account
A's image protects A's image. A tag resolves to the digest it points to now; a manifest list and its
children protect each other (a runtime may report either).

Protection is by pin tag: every in-use image carries a tag `ecr-cost-keep-<12 hex of its digest>`, and the
adopted policy gets a first rule that selects that prefix and keeps (practically) any number of them. ECR
never lets a lower rule expire an image a higher rule selects, so pins survive any number of later pushes,
and they are released when the image is no longer used and the policy would expire it anyway.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .lifecycle import evaluate
from .models import Image, Manifest

PIN_PREFIX = "ecr-cost-keep"
PIN_KEEP_COUNT = 100_000  # the keep rule's count: far beyond any repository's in-use images
PIN_RULE_DESCRIPTION = "ecr-cost-bot: keep images in use (ECS, Lambda, Kubernetes, recent pulls)"
MAX_RULES = 50
RISKY_ACTIONS = ("expire", "transition")  # what makes an in-use image unpullable: deleted, or archived

_ECR_URI = re.compile(  # IPv4 (dkr.ecr …amazonaws.com[.cn]), FIPS, and dual-stack (dkr-ecr …on.aws) endpoints
    r"^(?:[a-z-]+://)?(?P<account>\d{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
    r"\.(?:amazonaws\.com(?:\.cn)?|on\.aws)(?::443)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
_BARE_DIGEST = re.compile(r"^(?:[a-z-]+://)?(?:sha256:)?(?P<hex>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Usage:
    """Something that runs (or may run) an image: the contract's `used_by` entry."""

    kind: str  # ecs-task | ecs-service | lambda | kubernetes | recent-pull
    name: str
    account_id: str  # where it runs
    region: str


@dataclass(frozen=True)
class ImageRef:
    """An ECR image as a runtime names it."""

    account_id: str
    region: str
    repository: str
    tag: str | None
    digest: str | None


@dataclass(frozen=True)
class Reference:
    image: ImageRef
    usage: Usage


@dataclass(frozen=True)
class SourceProblem:
    """A runtime that could not be read: the in-use set is partial (never "not in use" by silence)."""

    source: str  # ecs | lambda | kubernetes
    account_id: str
    region: str
    message: str


@dataclass
class InUseSet:
    """Repository key (account, region, name) -> image digest -> where it runs."""

    images: dict[tuple[str, str, str], dict[str, list[Usage]]] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)
    collected_at: datetime | None = None

    @property
    def partial(self) -> bool:
        return bool(self.problems)

    def of(self, account_id: str, region: str, repository: str) -> dict[str, list[Usage]]:
        return self.images.get((account_id, region, repository), {})


def parse_image_uri(uri: str) -> ImageRef | None:
    """An ECR image URI (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG][@DIGEST]`, optionally behind a
    scheme such as `docker-pullable://`), or None for anything else (Docker Hub, another registry)."""
    if not isinstance(uri, str):
        return None
    host, slash, path = uri.strip().replace("@sha256@sha256:", "@sha256:").partition("/")  # a doubled prefix seen
    if "://" in uri:
        scheme, _, rest = uri.strip().partition("://")
        host, slash, path = rest.replace("@sha256@sha256:", "@sha256:").partition("/")
    match = _ECR_URI.match(host.lower() + slash + path)  # host names are case-insensitive; tags are not
    if not match:
        return None
    tag, digest = match["tag"], match["digest"]
    return ImageRef(match["account"], match["region"], match["repository"], tag or (None if digest else "latest"),
                    digest)


def looks_like_ecr(uri: str) -> bool:
    """A reference to an ECR registry, even one this module cannot read: never ignored silently."""
    return isinstance(uri, str) and bool(re.search(r"\d{12}\.dkr[.-]ecr", uri.lower()))


def digest_of(image_id: str, image: str | None = None) -> ImageRef | None:
    """Kubernetes' `imageID`: `docker-pullable://repo@sha256:…`, `repo@sha256:…`, or a bare `sha256:…` that
    belongs to the repository of ``image`` (the container's `.image`)."""
    ref = parse_image_uri(image_id)
    if ref is not None and ref.digest:
        return ImageRef(ref.account_id, ref.region, ref.repository, None, ref.digest)
    bare = _BARE_DIGEST.match(image_id or "")
    named = parse_image_uri(image or "")
    if bare and named:
        return ImageRef(named.account_id, named.region, named.repository, None, f"sha256:{bare['hex']}")
    return None


def resolve(references: Iterable[Reference], inventories: Mapping[tuple[str, str, str], Sequence[Image]],
            manifests: Mapping[str, Manifest]) -> InUseSet:
    """Each reference to the digests it protects in our inventory: a digest directly, a tag through the
    digest that holds it now, and a manifest list with its children (either way)."""
    found = InUseSet()
    parents: dict[str, set[str]] = {}
    for digest, manifest in manifests.items():
        for child in manifest.children:
            parents.setdefault(child, set()).add(digest)
    for reference in references:
        ref = reference.image
        key = (ref.account_id, ref.region, ref.repository)
        images = inventories.get(key)
        if images is None:
            continue  # not a repository we scan (another estate, or a pull-through cache we do not read)
        held = {i.digest for i in images}
        digests = set()
        if ref.digest and ref.digest in held:
            digests.add(ref.digest)
        if ref.tag:
            digests |= {i.digest for i in images if ref.tag in i.tags}
        if not digests:
            continue  # a tag no image holds now: nothing of ours to keep (the runtime could not pull it either)
        family = set(digests)
        for digest in digests:  # a list and its children, and a child's siblings through its list
            family |= set(manifests[digest].children) if digest in manifests else set()
            for parent in parents.get(digest, set()):
                family.add(parent)
                family |= set(manifests[parent].children) if parent in manifests else set()
        repo = found.images.setdefault(key, {})
        for digest in family & held:
            usages = repo.setdefault(digest, [])
            if reference.usage not in usages:
                usages.append(reference.usage)
    return found


def recent_pulls(key: tuple[str, str, str], images: Iterable[Image], now: datetime, days: int) -> list[Reference]:
    """Images pulled within ``days``: something we cannot see may run them (0 days: off)."""
    if days <= 0:
        return []
    since = now - timedelta(days=days)
    account_id, region, repository = key
    return [Reference(ImageRef(account_id, region, repository, None, i.digest),
                      Usage("recent-pull", f"pulled {i.last_pulled_at:%Y-%m-%d}", account_id, region))
            for i in images if i.last_pulled_at is not None and i.last_pulled_at >= since]


# -- protection -----------------------------------------------------------------------------------

def pin_tag(digest: str) -> str:
    return f"{PIN_PREFIX}-{digest.split(':', 1)[-1][:12]}"


def is_pin(tag: str) -> bool:
    return tag.startswith(PIN_PREFIX)


def _is_pin_rule(rule: Mapping) -> bool:
    """The bot's own keep rule (a team's rule that happens to use the same prefix is not)."""
    selection = rule.get("selection", {}) if isinstance(rule, Mapping) else {}
    return selection.get("tagPrefixList") == [PIN_PREFIX] and rule.get("description") == PIN_RULE_DESCRIPTION


def has_pin_rule(policy: Mapping) -> bool:
    return any(_is_pin_rule(r) for r in policy.get("rules", []))


def protected(policy: Mapping) -> dict:
    """``policy`` with the bot's keep rule first: no lower rule can expire or archive a pinned image. The keep rule
    is stripped wherever it is (a copied policy may have it below a team's rule) and put back at priority 1; the
    other rules keep their order, their priorities shifted up by one when the first is taken."""
    rules = [json.loads(json.dumps(r)) for r in policy["rules"] if not _is_pin_rule(r)]
    if len(rules) >= MAX_RULES:
        raise ValueError(f"the policy has {MAX_RULES} rules, ECR's maximum: no room for the rule that keeps "
                         f"images in use")
    if rules and min(r["rulePriority"] for r in rules) <= 1:
        for rule in rules:
            rule["rulePriority"] += 1
    keep = {"rulePriority": 1, "description": PIN_RULE_DESCRIPTION,
            "selection": {"tagStatus": "tagged", "tagPrefixList": [PIN_PREFIX], "countType": "imageCountMoreThan",
                          "countNumber": PIN_KEEP_COUNT},
            "action": {"type": "expire"}}
    return {**{k: v for k, v in policy.items() if k != "rules"}, "rules": [keep, *rules]}


def unprotected(policy: Mapping) -> dict:
    """The policy as written, without the keep rule (what it would do without protection)."""
    return {**policy, "rules": [r for r in policy.get("rules", []) if not _is_pin_rule(r)]}


@dataclass(frozen=True)
class PinPlan:
    """What protection needs now in one repository: images to pin, and pins to release."""

    pin: tuple[str, ...]  # digests in use that carry no pin
    release: tuple[str, ...]  # digests pinned, no longer in use, that the policy would expire anyway
    keep_pinned: tuple[str, ...]  # pinned, no longer in use, but the policy keeps them for now


def plan_pins(images: Sequence[Image], in_use: Iterable[str], policy: Mapping, now: datetime,
              manifests: Mapping[str, Manifest] | None = None) -> PinPlan:
    """Pin every in-use image. Release a pin only where the policy, evaluated without pins, would expire the
    image anyway: removing an image's last tag deletes it, so a pin is never what deletes a kept image."""
    in_use = set(in_use)
    pinned = {i.digest for i in images if any(is_pin(t) for t in i.tags)}
    to_pin = tuple(sorted(d for d in in_use if d not in pinned and any(i.digest == d for i in images)))
    idle = pinned - in_use
    if not idle:
        return PinPlan(to_pin, (), ())
    # as ECR would see the repository once idle pins are gone and the needed ones are added
    future = [Image(i.digest, tuple(t for t in i.tags if not (is_pin(t) and i.digest in idle))
                    + ((pin_tag(i.digest),) if i.digest in to_pin else ()), i.listed_bytes, i.pushed_at,
                    i.last_pulled_at, i.media_type, i.status, i.archived_at) for i in images]
    decisions = evaluate(future, protected(unprotected(policy)), now, manifests)
    release = {d for d in idle if d in decisions and decisions[d].action == "expire"}
    # a child is never released while its index stays: removing its last tag would delete what the index needs
    parents = {child: digest for digest, m in (manifests or {}).items() for child in m.children}
    held = {i.digest for i in images}
    release = {d for d in release
               if not (parents.get(d) in held and (parents[d] not in decisions or decisions[parents[d]].action
                                                   != "expire"))}
    return PinPlan(to_pin, tuple(sorted(release)), tuple(sorted(idle - release)))


def harmed(images: Sequence[Image], policy: Mapping, used: Mapping[str, object], now: datetime,
           manifests: Mapping[str, Manifest] | None = None) -> list[tuple[Image, int, str]]:
    """The in-use images ``policy`` would expire or archive, as ECR would evaluate it on ``images`` (pins
    included): (image, rule priority, action), newest first. The one safety check before any policy is put."""
    decisions = evaluate(images, policy, now, manifests)
    found = [(d.image, d.rule_priority, d.action) for digest, d in decisions.items()
             if digest in used and d.action in RISKY_ACTIONS]
    return sorted(found, key=lambda f: (-(f[0].pushed_at.timestamp() if f[0].pushed_at else 0.0), f[0].digest))


def after_plan(images: Sequence[Image], plan: PinPlan) -> list[Image]:
    """The images once ``plan`` is carried out: pins added; released pins removed, and an image whose last tag
    was its pin gone (removing an image's last tag deletes it)."""
    out = []
    for image in images:
        tags = image.tags
        if image.digest in plan.pin:
            tags = (*tags, pin_tag(image.digest))
        if image.digest in plan.release:
            tags = tuple(t for t in tags if t != pin_tag(image.digest))
            if not tags:
                continue
        out.append(replace(image, tags=tags))
    return out
