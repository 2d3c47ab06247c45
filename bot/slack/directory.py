"""Who a Slack user is to the bot: owner-tag entries (Slack user IDs or emails) matched to user IDs.

Email lookups (users.lookupByEmail) are cached, thread-safe and bounded; a "not found" expires after an
hour, so a new hire is recognised without a restart, and an error (rate limit, missing scope) is not cached.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from slack_sdk.errors import SlackApiError

from ..gate import Actor

logger = logging.getLogger(__name__)
FOUND_TTL = 24 * 3600.0  # an address can move to another person; re-ask daily
NOT_FOUND_TTL = 3600.0
MAX_ENTRIES = 10_000


class SlackDirectory:
    def __init__(self, client, admins: Sequence[str], clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._admins = frozenset(admins)
        self._clock = clock
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()  # email -> (user id, expires)
        self._lock = threading.Lock()

    def actor(self, user_id: str) -> Actor:
        """A Slack user as the policy changes see them: an admin, or named by an owner-tag entry."""
        return Actor(user_id, "slack", is_admin=user_id in self._admins,
                     names_me=lambda entry: self.user_id_for(entry) == user_id)

    @property
    def admins(self) -> list[str]:
        return sorted(self._admins)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self._admins

    def owner_ids(self, owners: Sequence[str]) -> list[str]:
        """The owners as Slack user IDs (emails looked up; unknown emails left out)."""
        return list(dict.fromkeys(i for i in (self.user_id_for(o) for o in owners) if i))

    def __len__(self) -> int:
        """How many emails are cached."""
        with self._lock:
            return len(self._cache)

    def user_id_for(self, entry: str) -> str | None:
        """An owner-tag entry as a Slack user ID: itself, or the user an email belongs to."""
        if "@" not in entry:
            return entry
        now = self._clock()
        with self._lock:
            cached = self._cache.get(entry)
            if cached is not None and cached[1] > now:
                self._cache.move_to_end(entry)
                return cached[0]
        try:
            user_id, ttl = self._client.users_lookupByEmail(email=entry)["user"]["id"], FOUND_TTL
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                logger.warning("users.lookupByEmail failed for %s: %s", entry, exc.response.get("error"))
                return None  # rate limited, missing scope...: ask again next time
            user_id, ttl = None, NOT_FOUND_TTL
        with self._lock:
            self._cache[entry] = (user_id, now + ttl)
            self._cache.move_to_end(entry)
            while len(self._cache) > MAX_ENTRIES:
                self._cache.popitem(last=False)
        return user_id
