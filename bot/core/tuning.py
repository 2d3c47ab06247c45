"""The base policy, tuned by an owner: five numbers and a prefix in, an ECR lifecycle policy out. Pure.

The form's fields map one to one to the base policy's rules (untagged, `latest`, the version prefix, overall),
plus an optional age for untagged images. ECR accepts at most one rule selecting untagged images, so an age,
when given, replaces the untagged count rather than adding a second untagged rule.

Two optional numbers add ECR's own archive rules. "Archive images nobody has pulled for N days" is a
``transition`` rule (``tagStatus: any``, ``sinceImagePulled`` N): ECR wants its one ``any`` rule of the standard
class last, and an image a higher rule selects is never acted on by a lower one, so it takes the place of the
overall count (a count rule over every image would leave it nothing to archive). It acts on the tagged images
the latest and version rules do not select (untagged ones are the untagged rule's). "Delete archived images
after M days" is an ``expire`` rule of the archive class (``storageClass: archive``, ``sinceImageTransitioned``
M), last; M is at least 90: ECR bills an archived image 90 days at least and its lifecycle cannot delete one
archived for less.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .inuse import unprotected
from .lifecycle import ARCHIVE_MINIMUM_DAYS

MAX_COUNT = 100_000  # ECR's images-per-repository quota: a larger count can never expire anything
MAX_DAYS = 3_650
MAX_PREFIX = 128  # a tag is at most 128 characters: a longer prefix can never match
TAG_CHARACTERS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # the characters a Docker/OCI tag may hold
FIELDS = ("untagged", "latest", "prefix", "versions", "overall", "untagged_days", "archive_days",
          "archive_expire_days")
OPTIONAL_DAYS = {"untagged_days": 1, "archive_days": 1, "archive_expire_days": ARCHIVE_MINIMUM_DAYS}  # the minimum


@dataclass(frozen=True)
class Tuning:
    untagged: int = 1  # untagged images kept
    latest: int = 1  # images tagged latest* kept
    prefix: str = "v"  # the version tag prefix
    versions: int = 9  # images tagged with the prefix kept
    overall: int = 20  # images kept overall
    untagged_days: int | None = None  # when set: untagged images older than this expire (instead of the count)
    archive_days: int | None = None  # when set: images nobody pulled for this long are archived (instead of overall)
    archive_expire_days: int | None = None  # when set: images archived this long ago expire (at least 90)

    def as_dict(self) -> dict:
        return asdict(self)


def tuned_policy(tuning: Tuning) -> dict:
    """The lifecycle policy the tuning describes, in the base policy's shape and order."""
    if tuning.untagged_days is None:
        untagged = {"description": f"Keep only {tuning.untagged} untagged image(s), expire all others",
                    "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan",
                                  "countNumber": tuning.untagged}}
    else:
        untagged = {"description": f"Expire untagged images older than {tuning.untagged_days} days",
                    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                  "countNumber": tuning.untagged_days}}
    rules = [
        untagged,
        {"description": f"Keep only {tuning.latest} image(s) tagged latest, expire all others",
         "selection": {"tagStatus": "tagged", "tagPrefixList": ["latest"], "countType": "imageCountMoreThan",
                       "countNumber": tuning.latest}},
        {"description": f"Keep the last {tuning.versions} images tagged with a {tuning.prefix} prefix (releases)",
         "selection": {"tagStatus": "tagged", "tagPrefixList": [tuning.prefix], "countType": "imageCountMoreThan",
                       "countNumber": tuning.versions}},
    ]
    rules = [{**rule, "action": {"type": "expire"}} for rule in rules] + archive_rules(tuning)
    return {"rules": [{"rulePriority": i, **rule} for i, rule in enumerate(rules, 1)]}


def archive_rules(tuning: Tuning) -> list[dict]:
    """The standard class's last rule (the overall count, or the archive transition in its place) and the archive
    class's expiry, without priorities: the tuned policy's last rules, in that order."""
    if tuning.archive_days is None:
        last = {"description": f"Keep the last {tuning.overall} images overall",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": tuning.overall},
                "action": {"type": "expire"}}
    else:
        last = {"description": f"Archive images nobody has pulled for {tuning.archive_days} days",
                "selection": {"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days",
                              "countNumber": tuning.archive_days},
                "action": {"type": "transition", "targetStorageClass": "archive"}}
    if tuning.archive_expire_days is None:
        return [last]
    return [last, {"description": f"Delete images archived {tuning.archive_expire_days} days ago",
                   "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned",
                                 "countUnit": "days", "countNumber": tuning.archive_expire_days},
                   "action": {"type": "expire"}}]


def tuning_of(policy: Mapping) -> Tuning:
    """The tuning a policy in the base policy's shape describes (to prefill the form); the defaults for whatever
    does not fit that shape."""
    found: dict = {}
    rules = policy.get("rules") if isinstance(policy, Mapping) else None
    for rule in rules if isinstance(rules, list) else []:
        selection = rule.get("selection") if isinstance(rule, Mapping) else None
        if not isinstance(selection, Mapping):
            continue
        status, count_type = selection.get("tagStatus"), selection.get("countType")
        action = rule.get("action") if isinstance(rule.get("action"), Mapping) else {}
        number = selection.get("countNumber")
        prefixes = selection.get("tagPrefixList") or []
        if not isinstance(number, int) or isinstance(number, bool):
            continue
        if status == "untagged" and count_type == "imageCountMoreThan":
            found.setdefault("untagged", number)
        elif status == "untagged" and count_type == "sinceImagePushed":
            found.setdefault("untagged_days", number)
        elif status == "tagged" and count_type == "imageCountMoreThan" and len(prefixes) == 1:
            if prefixes[0] == "latest":
                found.setdefault("latest", number)
            elif isinstance(prefixes[0], str):
                found.setdefault("prefix", prefixes[0])
                found.setdefault("versions", number)
        elif status == "any" and count_type == "imageCountMoreThan":
            found.setdefault("overall", number)
        elif status == "any" and count_type == "sinceImagePulled" and action.get("type") == "transition":
            found.setdefault("archive_days", number)
        elif (status == "any" and count_type == "sinceImageTransitioned" and action.get("type") == "expire"
              and number >= ARCHIVE_MINIMUM_DAYS):
            found.setdefault("archive_expire_days", number)
    return Tuning(**found)


def parse_tuning(values: Mapping[str, str | None]) -> tuple[Tuning | None, dict[str, str]]:
    """The form's raw values (field -> text, None or "" when empty) as a Tuning, or the problems per field, each
    said so that a person knows what to type instead."""
    problems: dict[str, str] = {}
    parsed: dict = {}
    for name in ("untagged", "latest", "versions", "overall", *OPTIONAL_DAYS):
        raw = (values.get(name) or "").strip()
        if not raw:
            if name in OPTIONAL_DAYS:
                parsed[name] = None
            else:
                problems[name] = "Enter a whole number of images to keep (at least 1)."
            continue
        lowest, limit, unit = (OPTIONAL_DAYS[name], MAX_DAYS, "days") if name in OPTIONAL_DAYS else \
            (1, MAX_COUNT, "images")
        if not re.fullmatch(r"[0-9]{1,12}", raw):
            problems[name] = f"Enter a whole number from {lowest} to {limit:,}."
        elif not lowest <= int(raw) <= limit:
            problems[name] = (f"{int(raw):,} is out of range: from {lowest} to {limit:,} {unit}"
                              + (" (ECR's images-per-repository quota)." if unit == "images" else
                                 f" (ECR bills an archived image {ARCHIVE_MINIMUM_DAYS} days at least and cannot "
                                 f"delete it sooner)." if lowest == ARCHIVE_MINIMUM_DAYS else "."))
        else:
            parsed[name] = int(raw)
    prefix = values.get("prefix") or ""
    if not prefix.strip():
        problems["prefix"] = "Enter the prefix your version tags start with, e.g. v or release-."
    elif len(prefix) > MAX_PREFIX:
        problems["prefix"] = f"At most {MAX_PREFIX} characters (a tag is never longer); this one has {len(prefix)}."
    elif not TAG_CHARACTERS.fullmatch(prefix):
        problems["prefix"] = ("A tag prefix holds only letters, digits, _ . and - (no spaces), and starts with a "
                              "letter, a digit or _.")
    elif prefix.startswith("latest") or "latest".startswith(prefix):
        problems["prefix"] = (f"{prefix!r} overlaps the latest rule's prefix: ECR needs distinct prefixes; "
                              f"use your version tags' own prefix.")
    else:
        parsed["prefix"] = prefix
    if problems:
        return None, problems
    return Tuning(**parsed), {}


def _ordered_rules(policy: Mapping) -> list:
    """The rules in priority order, their priorities and descriptions aside (what they do, not how they are
    numbered or described), the bot's own keep rule left out."""
    rules = [r for r in unprotected(policy).get("rules", []) if isinstance(r, Mapping)]
    ordered = sorted(rules, key=lambda r: p if isinstance(p := r.get("rulePriority"), int) else 0)
    return [{k: v for k, v in r.items() if k not in ("rulePriority", "description")} for r in ordered]


def describe_tuning(tuning: Tuning) -> str:
    untagged = (f"untagged older than {tuning.untagged_days} days" if tuning.untagged_days is not None
                else f"{tuning.untagged} untagged")
    overall = (f"archives the others nobody pulled for {tuning.archive_days} days" if tuning.archive_days is not None
               else f"{tuning.overall} overall")
    deletes = (f", deletes images archived {tuning.archive_expire_days} days ago"
               if tuning.archive_expire_days is not None else "")
    return f"keeps {untagged}, {tuning.latest} latest, {tuning.versions} {tuning.prefix}*, {overall}{deletes}"


def archives(policy: Mapping) -> bool:
    """Whether ``policy`` moves images to the archive (a ``transition`` rule)."""
    rules = policy.get("rules") if isinstance(policy, Mapping) else None
    return any(isinstance(r, Mapping) and isinstance(r.get("action"), Mapping)
               and r["action"].get("type") == "transition" for r in (rules if isinstance(rules, list) else []))


def lifecycle_status(policy_text: str | None, base_policy: Mapping, tuned_text: str | None = None) -> str:
    """'none', 'base' (the base policy's rules), 'tuned (...)' (the rules an owner tuned through the bot, given
    as ``tuned_text``) or 'custom (N rules)'; the keep rule that protects in-use images is not counted."""
    if policy_text is None:
        return "none"
    try:
        policy = json.loads(policy_text)
        rules = _ordered_rules(policy)
    except (ValueError, RecursionError, AttributeError, TypeError):
        return "custom (unreadable JSON)"
    if rules == _ordered_rules(base_policy):
        return "base"
    if tuned_text is not None:
        try:
            tuned = json.loads(tuned_text)
        except (ValueError, RecursionError):
            tuned = None
        if isinstance(tuned, Mapping) and rules == _ordered_rules(tuned):
            return f"tuned ({describe_tuning(tuning_of(unprotected(tuned)))})"
    return f"custom ({len(rules)} rule{'s' if len(rules) != 1 else ''})"
