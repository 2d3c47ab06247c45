"""Lifecycle policies: the parts the inventory needs (status of a repository's policy).

Validation and evaluation exactly as AWS does are the lifecycle engine's work (a later issue).
"""
from __future__ import annotations

import json


def _comparable_rules(policy: dict) -> list:
    rules = policy.get("rules") if isinstance(policy, dict) else None
    if not isinstance(rules, list):
        return []
    comparable = [{k: v for k, v in rule.items() if k != "description"} for rule in rules if isinstance(rule, dict)]
    return sorted(comparable, key=lambda rule: json.dumps(rule, sort_keys=True))


def policy_status(policy_text: str | None, base_policy: dict) -> str:
    """'none', 'base' (the same rules as the base policy, descriptions aside) or 'custom (N rules)'."""
    if policy_text is None:
        return "none"
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return "custom (unreadable JSON)"
    if _comparable_rules(policy) == _comparable_rules(base_policy):
        return "base"
    count = len(policy.get("rules", [])) if isinstance(policy, dict) and isinstance(policy.get("rules"), list) else 0
    return f"custom ({count} rule{'s' if count != 1 else ''})"
