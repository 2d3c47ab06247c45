"""Who may pull a repository's images, from its permissions policy and its registry's. Pure.

An account that may pull (``ecr:BatchGetImage``) may run any image of the repository: if the bot cannot read
that account's runtimes, "not in use" is not known there. Principals: account IDs, account and role ARNs;
``"*"`` (or a service principal) narrowed by ``aws:PrincipalAccount``, ``aws:SourceAccount``,
``aws:PrincipalArn``, ``aws:SourceArn`` (their account) or ``aws:PrincipalOrgID`` (every account of that
organisation). ``"*"`` without such a condition: anyone may pull. Deny statements are not subtracted: what may
pull is over-counted, never under-counted.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

PULL_ACTION = "ecr:batchgetimage"
_ACCOUNT = re.compile(r"^(\d{12})$")
_ARN_ACCOUNT = re.compile(r"^arn:[\w-]*:[\w-]*:[\w-]*:(\d{12}):")
# keys naming the caller's account (aws:ResourceAccount names the repository's own: it narrows nothing)
_ACCOUNT_KEYS = ("aws:principalaccount", "aws:sourceaccount")
_ARN_KEYS = ("aws:principalarn", "aws:sourcearn")
_ORG_KEYS = ("aws:principalorgid",)


@dataclass(frozen=True)
class Grants:
    """Who a policy lets pull: accounts, organisations (o-… IDs), anyone; and what could not be read."""

    accounts: frozenset[str] = frozenset()
    organisations: frozenset[str] = frozenset()
    anyone: tuple[str, ...] = ()  # why anyone may pull (one entry per statement that says so)
    problems: tuple[str, ...] = ()

    def __or__(self, other: Grants) -> Grants:
        return Grants(self.accounts | other.accounts, self.organisations | other.organisations,
                      self.anyone + other.anyone, self.problems + other.problems)


def _list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _grants_pull(statement: dict) -> bool:
    if "NotAction" in statement:  # everything but some actions: a pull unless it is among them
        return not any(fnmatchcase(PULL_ACTION, str(a).lower()) for a in _list(statement["NotAction"]))
    return any(fnmatchcase(PULL_ACTION, str(a).lower()) for a in _list(statement.get("Action")))


def _applies_to(statement: dict, arn: str | None) -> bool:
    """A registry policy's statement names repositories in its Resource; a repository policy's applies."""
    if arn is None or ("Resource" not in statement and "NotResource" not in statement):
        return True
    if "NotResource" in statement:
        return not any(fnmatchcase(arn, str(r)) for r in _list(statement["NotResource"]))
    return any(fnmatchcase(arn, str(r)) for r in _list(statement["Resource"]))


def _narrowing(condition) -> tuple[set[str], set[str]]:
    """(accounts, organisations) a statement's Condition narrows its principals to (both empty: not narrowed)."""
    accounts: set[str] = set()
    organisations: set[str] = set()
    if not isinstance(condition, dict):
        return accounts, organisations
    for operator, entries in condition.items():
        operator = str(operator).lower()
        if not isinstance(entries, dict) or "not" in operator or operator.endswith("ifexists") \
                or operator.startswith("forallvalues:"):
            # StringNotEquals and the like exclude; ...IfExists and ForAllValues also pass when the key is absent
            # (an IAM caller has no aws:SourceAccount): they narrow nothing we can name
            continue
        for key, values in entries.items():
            key = str(key).lower()
            for value in map(str, _list(values)):
                if key in _ACCOUNT_KEYS and _ACCOUNT.match(value):
                    accounts.add(value)
                elif key in _ARN_KEYS and (found := _ARN_ACCOUNT.match(value)):
                    accounts.add(found[1])
                elif key in _ORG_KEYS and value:
                    organisations.add(value)
    return accounts, organisations


def _principals(principal) -> tuple[set[str], list[str]]:
    """(the accounts named, the wildcard or service principals that name none)."""
    accounts: set[str] = set()
    open_ended: list[str] = []
    if principal == "*":
        return accounts, ["*"]
    entries = principal.items() if isinstance(principal, dict) else [("AWS", principal)]
    for kind, values in entries:
        for value in map(str, _list(values)):
            if value == "*":
                open_ended.append("*")
            elif str(kind).upper() == "AWS" and (found := _ACCOUNT.match(value) or _ARN_ACCOUNT.match(value)):
                accounts.add(value if _ACCOUNT.match(value) else found[1])
            else:  # a service (lambda.amazonaws.com), a federated or canonical user: any account's
                open_ended.append(f"{kind} {value}")
    return accounts, open_ended


def grants(policy_text: str | None, where: str, repository_arn: str | None = None) -> Grants:
    """Who ``policy_text`` (a repository's or, with ``repository_arn``, a registry's policy; ``where`` names it in
    problems) lets pull."""
    if policy_text is None:
        return Grants()
    try:
        policy = json.loads(policy_text)
        statements = _list(policy.get("Statement"))
    except (ValueError, AttributeError, RecursionError) as exc:
        return Grants(problems=(f"{where} cannot be read ({exc.__class__.__name__}): who may pull is unknown",))
    accounts: set[str] = set()
    organisations: set[str] = set()
    anyone: list[str] = []
    for statement in statements:
        if not isinstance(statement, dict):
            return Grants(problems=(f"{where} has a statement that is not an object: who may pull is unknown",))
        if statement.get("Effect") != "Allow" or not _grants_pull(statement) \
                or not _applies_to(statement, repository_arn):
            continue
        if "NotPrincipal" in statement:
            anyone.append(f"{where}: anyone but the principals it names may pull (NotPrincipal)")
            continue
        named, open_ended = _principals(statement.get("Principal"))
        accounts |= named
        if open_ended:
            narrowed_accounts, narrowed_organisations = _narrowing(statement.get("Condition"))
            if narrowed_accounts or narrowed_organisations:
                accounts |= narrowed_accounts
                organisations |= narrowed_organisations
            else:
                who = "anyone" if open_ended == ["*"] else f"any account's {', '.join(sorted(set(open_ended)))}"
                anyone.append(f"{where} lets {who} pull (no aws:PrincipalAccount, aws:PrincipalOrgID or "
                              f"aws:SourceAccount condition)")
    return Grants(frozenset(accounts), frozenset(organisations), tuple(anyone))


def blind_spots(found: Grants, readable: Iterable[str], organisation_id: str | None,
                organisation_accounts: Iterable[str]) -> list[str]:
    """Why the in-use check of a repository with these grants is partial: an account that may pull whose runtimes
    the bot could not read, an organisation not wholly read, anyone. Empty: every puller was read."""
    readable = set(readable)
    problems = list(found.problems) + list(found.anyone)
    problems += [f"account {account} may pull (repository or registry policy), and the bot cannot read its "
                 f"runtimes" for account in sorted(found.accounts - readable)]
    members = set(organisation_accounts)
    for organisation in sorted(found.organisations):
        if organisation != organisation_id or not members:
            problems.append(f"every account of organisation {organisation} may pull, and the bot cannot list them")
        elif members - readable:
            unread = sorted(members - readable)
            problems.append(f"every account of organisation {organisation} may pull, and the bot cannot read the "
                            f"runtimes of {len(unread)} of them ({', '.join(unread[:5])}"
                            f"{' …' if len(unread) > 5 else ''})")
    return problems
