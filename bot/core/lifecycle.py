"""Lifecycle policies exactly as ECR treats them: validation, evaluation, bytes freed.

Sources: the ECR user guide's lifecycle policy properties, evaluation rules and worked examples
(ECR_FACTS.md §1-2). Pure: images + policy + now in, decisions out.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TypeGuard

from .cost import stored_bytes
from .models import Image, Manifest

MIN_POLICY_CHARS, MAX_POLICY_CHARS = 100, 30_720
MAX_RULES = 50
MAX_WILDCARDS = 4
ARCHIVE_MINIMUM_DAYS = 90  # ECR bills an archived image 90 days at least, and no lifecycle rule expires one sooner
TAG_STATUSES = ("tagged", "untagged", "any")
COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned")
STORAGE_CLASSES = ("standard", "archive")
ACTIONS = ("expire", "transition")
RULE_FIELDS = {"rulePriority", "description", "selection", "action"}
SELECTION_FIELDS = {"tagStatus", "tagPrefixList", "tagPatternList", "storageClass", "countType", "countUnit",
                    "countNumber"}
ACTION_FIELDS = {"type", "targetStorageClass"}


# -- validation -------------------------------------------------------------------------------

def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _tag_list_problems(name: str, value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        return [f"selection.{name} must be a non-empty list of strings"]
    problems = []
    for entry in value:
        if not isinstance(entry, str) or not entry:
            problems.append(f"selection.{name} entries must be non-empty strings, got {json.dumps(entry)}")
        elif name == "tagPatternList" and entry.count("*") > MAX_WILDCARDS:
            problems.append(f"selection.tagPatternList entry {entry!r} has {entry.count('*')} wildcards "
                            f"(at most {MAX_WILDCARDS})")
    return problems


def _rule_problems(rule: object) -> list[str]:
    """What is wrong with one rule on its own (cross-rule checks are in validate_policy)."""
    if not isinstance(rule, dict):
        return ["must be an object"]
    problems = [f"unknown field {key!r}" for key in sorted(set(rule) - RULE_FIELDS)]
    priority = rule.get("rulePriority")
    if not _is_int(priority) or priority < 1:
        problems.append(f"rulePriority must be an integer >= 1, got {json.dumps(priority)}")
    if "description" in rule and not isinstance(rule["description"], str):
        problems.append("description must be a string")
    selection, action = rule.get("selection"), rule.get("action")
    if not isinstance(selection, dict):
        problems.append("selection is required and must be an object")
        selection = {}
    if not isinstance(action, dict):
        problems.append("action is required and must be an object")
        action = {}
    problems += [f"unknown field 'selection.{key}'" for key in sorted(set(selection) - SELECTION_FIELDS)]
    problems += [f"unknown field 'action.{key}'" for key in sorted(set(action) - ACTION_FIELDS)]

    status = selection.get("tagStatus")
    if status not in TAG_STATUSES:
        problems.append(f"selection.tagStatus must be one of {', '.join(TAG_STATUSES)}, got {json.dumps(status)}")
    lists = [name for name in ("tagPrefixList", "tagPatternList") if name in selection]
    for name in lists:
        problems += _tag_list_problems(name, selection[name])
    if len(lists) == 2:
        problems.append("selection cannot have both tagPrefixList and tagPatternList")
    if status == "tagged" and not lists:
        problems.append("selection.tagStatus 'tagged' needs a tagPrefixList or a tagPatternList")
    if status in ("untagged", "any") and lists:
        problems.append(f"selection.{lists[0]} is only allowed with tagStatus 'tagged'")

    storage = selection.get("storageClass", "standard")
    if storage not in STORAGE_CLASSES:
        problems.append(f"selection.storageClass must be standard or archive, got {json.dumps(storage)}")
    count_type, unit, number = selection.get("countType"), selection.get("countUnit"), selection.get("countNumber")
    if count_type not in COUNT_TYPES:
        problems.append(f"selection.countType must be one of {', '.join(COUNT_TYPES)}, got {json.dumps(count_type)}")
    elif count_type == "imageCountMoreThan":
        if "countUnit" in selection:
            problems.append("selection.countUnit is not allowed with countType imageCountMoreThan")
    elif unit != "days":
        problems.append(f"selection.countUnit must be 'days' with countType {count_type}, got {json.dumps(unit)}")
    if not _is_int(number) or number < 1:
        problems.append(f"selection.countNumber must be an integer >= 1, got {json.dumps(number)}")
    if count_type == "sinceImageTransitioned" and storage != "archive":
        problems.append("selection.countType sinceImageTransitioned needs storageClass 'archive'")
    if count_type == "sinceImageTransitioned" and _is_int(number) and 1 <= number < ARCHIVE_MINIMUM_DAYS:
        problems.append(f"selection.countNumber {number} is below {ARCHIVE_MINIMUM_DAYS} with sinceImageTransitioned: "
                        f"ECR cannot expire an image archived less than {ARCHIVE_MINIMUM_DAYS} days ago (its minimum "
                        f"storage charge)")
    if count_type == "sinceImagePulled" and action.get("type") == "expire":
        problems.append("selection.countType sinceImagePulled goes only with action type transition (to the archive): "
                        "ECR refuses to expire by last pull (the bot's sweep does that)")
    if storage == "archive" and count_type in COUNT_TYPES and count_type != "sinceImageTransitioned":
        problems.append("selection.storageClass 'archive' is only allowed with countType sinceImageTransitioned")

    kind, target = action.get("type"), action.get("targetStorageClass")
    if kind not in ACTIONS:
        problems.append(f"action.type must be expire or transition, got {json.dumps(kind)}")
    elif kind == "transition":
        if target != "archive":
            problems.append(f"action.type transition needs targetStorageClass 'archive', got {json.dumps(target)}")
        if storage == "archive" and count_type == "sinceImageTransitioned":  # else said of the selection already
            problems.append("action.type transition applies to standard images, not to storageClass 'archive'")
    elif "targetStorageClass" in action:
        problems.append("action.targetStorageClass is only allowed with action type transition")
    return problems


def _label(index: int, rule: object) -> str:
    priority = rule.get("rulePriority") if isinstance(rule, dict) else None
    return f"rule {priority}" if _is_int(priority) else f"rule #{index + 1} (no valid rulePriority)"


def validate_policy(text: str | None) -> tuple[dict | None, list[str]]:
    """(policy, []) when ECR would accept ``text``; else every problem, each naming its rule priority."""
    problems: list[str] = []
    if not isinstance(text, str):
        return None, ["policy text must be a string"]
    if len(text) < MIN_POLICY_CHARS or len(text) > MAX_POLICY_CHARS:
        problems.append(f"policy text is {len(text):,} characters; ECR accepts {MIN_POLICY_CHARS} to "
                        f"{MAX_POLICY_CHARS:,}")
    try:
        policy = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, problems + [f"policy is not valid JSON: {exc}"]
    if not isinstance(policy, dict):
        return None, problems + ["policy must be a JSON object with a 'rules' list"]
    problems += [f"unknown top-level field {key!r}" for key in sorted(set(policy) - {"rules"})]
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        return policy, problems + ["policy needs a non-empty 'rules' list"]
    if len(rules) > MAX_RULES:
        problems.append(f"policy has {len(rules)} rules; ECR accepts at most {MAX_RULES}")
    for i, rule in enumerate(rules):
        problems += [f"{_label(i, rule)}: {p}" for p in _rule_problems(rule)]

    valid = [r for r in rules if isinstance(r, dict) and _is_int(r.get("rulePriority"))
             and isinstance(r.get("selection"), dict)]
    seen: dict[int, int] = {}
    for rule in valid:
        seen[rule["rulePriority"]] = seen.get(rule["rulePriority"], 0) + 1
    problems += [f"rule {p}: rulePriority {p} is used by {n} rules; priorities must be unique"
                 for p, n in sorted(seen.items()) if n > 1]
    for storage in STORAGE_CLASSES:
        in_class = [r for r in valid if r["selection"].get("storageClass", "standard") == storage]
        untagged = [r["rulePriority"] for r in in_class if r["selection"].get("tagStatus") == "untagged"]
        if len(untagged) > 1:
            problems.append(f"rules {', '.join(map(str, sorted(untagged)))}: only one rule may select untagged "
                            f"images (storage class {storage})")
        prefixes: dict[str, int] = {}
        for rule in sorted(in_class, key=lambda r: r["rulePriority"]):
            prefix_list = rule["selection"].get("tagPrefixList")
            for prefix in prefix_list if isinstance(prefix_list, list) else []:
                if not isinstance(prefix, str):
                    continue
                if prefix in prefixes:
                    problems.append(f"rule {rule['rulePriority']}: tag prefix {prefix!r} is already used by rule "
                                    f"{prefixes[prefix]}; prefixes must be unique")
                else:
                    prefixes[prefix] = rule["rulePriority"]
        highest = max((r["rulePriority"] for r in in_class), default=None)
        for rule in in_class:
            if rule["selection"].get("tagStatus") == "any" and rule["rulePriority"] != highest:
                problems.append(f"rule {rule['rulePriority']}: a rule with tagStatus 'any' must have the highest "
                                f"rulePriority (storage class {storage}; rule {highest} is higher)")
    return policy, problems


# -- evaluation -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    image: Image
    rule_priority: int
    action: str  # expire | transition


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)),
                      re.DOTALL)


def matches_tags(selection: Mapping, tags: Sequence[str]) -> bool:
    """tagStatus and tag lists: every list entry must match some tag of the image."""
    status = selection["tagStatus"]
    if status == "untagged":
        return not tags
    if status == "any":
        return True
    if not tags:
        return False
    if "tagPrefixList" in selection:
        return all(any(tag.startswith(prefix) for tag in tags) for prefix in selection["tagPrefixList"])
    return all(any(_pattern(p).fullmatch(tag) for tag in tags) for p in selection["tagPatternList"])


def _in_storage_class(image: Image, storage: str) -> bool:
    archived = image.status == "ARCHIVED"
    return archived if storage == "archive" else not archived


def _newest_first(image: Image) -> tuple:
    return (-(image.pushed_at.timestamp() if image.pushed_at else 0.0), image.digest)


def _reference_time(image: Image, count_type: str) -> datetime | None:
    if count_type == "sinceImagePulled":
        return image.last_pulled_at or image.pushed_at  # never pulled: the push time
    if count_type == "sinceImageTransitioned":
        return image.archived_at
    return image.pushed_at


def _marked(selected: list[Image], selection: Mapping, now: datetime) -> list[Image]:
    count_type, number = selection["countType"], selection["countNumber"]
    if count_type == "imageCountMoreThan":
        return sorted(selected, key=_newest_first)[number:]
    try:
        limit = now - timedelta(days=number)
    except OverflowError:  # more days than a datetime can go back: nothing is that old
        return []
    return [i for i in selected if (t := _reference_time(i, count_type)) is not None and t < limit]


def evaluate(images: Sequence[Image], policy: Mapping, now: datetime,
             manifests: Mapping[str, Manifest] | None = None) -> dict[str, Decision]:
    """image digest -> the one rule that acts on it. ``policy`` must be valid.

    Rules are evaluated together and applied in priority order. An image is acted on by at most
    one rule, and an image selected (by tags) by a higher-priority rule is never acted on by a
    lower one, though lower rules still count it. A child of a manifest list is not expired while
    its list stays.
    """
    decisions: dict[str, Decision] = {}
    selected_above: set[str] = set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        storage = selection.get("storageClass", "standard")
        selected = [i for i in images if _in_storage_class(i, storage) and matches_tags(selection, i.tags)]
        for image in _marked(selected, selection, now):
            if image.digest not in decisions and image.digest not in selected_above:
                decisions[image.digest] = Decision(image, rule["rulePriority"], rule["action"]["type"])
        selected_above.update(i.digest for i in selected)
    if manifests:
        _keep_children_of_kept_lists(images, manifests, decisions)
    return decisions


def _keep_children_of_kept_lists(images: Sequence[Image], manifests: Mapping[str, Manifest],
                                 decisions: dict[str, Decision]) -> None:
    kept_children = {child for image in images
                     if decisions.get(image.digest) is None or decisions[image.digest].action != "expire"
                     for child in (manifests[image.digest].children if image.digest in manifests else ())}
    for digest in kept_children:
        if digest in decisions and decisions[digest].action == "expire":
            del decisions[digest]


@dataclass(frozen=True)
class Preview:
    decisions: list[Decision]  # newest push first
    remaining_image_count: int  # archived ones included: ECR bills them as it bills standard ones
    bytes_freed: int  # what the expiring images alone hold (archived images that expire included)
    bytes_archived: int = 0  # what the images moving to the archive alone hold: still stored, still billed

    @property
    def archiving_count(self) -> int:
        return sum(1 for d in self.decisions if d.action == "transition")


def preview(images: Sequence[Image], policy: Mapping, now: datetime, manifests: Mapping[str, Manifest]) -> Preview:
    """What the policy would do to these images, and the bytes only the expiring ones hold. An image moving to the
    archive this evaluation is not expired in it (ECR expires it at the earliest ``sinceImageTransitioned`` days
    later): its bytes are reported apart, never as freed."""
    decisions = evaluate(images, policy, now, manifests)
    expiring = {d for d, decision in decisions.items() if decision.action == "expire"}
    archiving = {d for d, decision in decisions.items() if decision.action == "transition"}
    remaining = [i for i in images if i.digest not in expiring]
    freed = stored_bytes(images, manifests) - stored_bytes(remaining, manifests)
    archived = stored_bytes(remaining, manifests) - stored_bytes([i for i in remaining if i.digest not in archiving],
                                                                 manifests) if archiving else 0
    ordered = sorted(decisions.values(), key=lambda d: _newest_first(d.image))
    return Preview(ordered, len(remaining), freed, archived)


# -- status -----------------------------------------------------------------------------------

def _comparable_rules(policy: object) -> list:
    rules = policy.get("rules") if isinstance(policy, dict) else None
    if not isinstance(rules, list):
        return []
    comparable = [{k: v for k, v in rule.items() if k != "description"} for rule in rules if isinstance(rule, dict)]
    return sorted(comparable, key=lambda rule: json.dumps(rule, sort_keys=True))


def fingerprint(policy_text: str | None) -> str:
    """A short, stable name for one exact policy text (or for none)."""
    import hashlib

    return hashlib.sha256((policy_text if policy_text is not None else "\0none").encode()).hexdigest()[:16]


def same_rules(first: str | None, second: str | None) -> bool:
    """Whether two policy texts have the same rules, descriptions aside (None: no policy)."""
    if first is None or second is None:
        return first is second
    try:
        return _comparable_rules(json.loads(first)) == _comparable_rules(json.loads(second))
    except (ValueError, RecursionError):
        return first == second


def same_document(first: str | None, second: str | None) -> bool:
    """Whether two policy texts are the same JSON document (AWS may reformat what it stores)."""
    if first is None or second is None:
        return first is second
    try:
        return json.loads(first) == json.loads(second)
    except (ValueError, RecursionError):
        return first == second
