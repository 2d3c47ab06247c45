"""`ecr-cost-bot health`: is the `serve` on this machine alive? For a container's HEALTHCHECK, in both modes.

The running `serve` writes a small JSON file beside its database every ``BEAT_SECONDS`` (its process, its
mode, whether its Socket Mode connection is up); ``health`` reads it. A file older than ``STALE_SECONDS``
means a hung or dead process; in HTTP mode ``health`` also asks ``GET /healthz`` on PORT.
"""
from __future__ import annotations

import json
import os
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from .config import Settings

BEAT_SECONDS = 15.0
STALE_SECONDS = 90.0


def alive_path(settings: Settings) -> Path:
    return Path(f"{settings.db_path}.alive")


def write_alive(settings: Settings, mode: str, connected: bool) -> bool:
    """Atomically (a reader never sees half a file). Returns True: a heartbeat's beat."""
    path = alive_path(settings)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), "mode": mode, "connected": connected,
                                     "at": datetime.now(UTC).isoformat(timespec="seconds")}))
    os.replace(temporary, path)
    return True


def check(settings: Settings, now: datetime | None = None) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    path = alive_path(settings)
    try:
        state = json.loads(path.read_text())
        at = datetime.fromisoformat(state["at"])
    except FileNotFoundError:
        return False, f"no heartbeat at {path}: is `ecr-cost-bot serve` running with this ECR_COST_DB?"
    except (OSError, ValueError, KeyError) as exc:
        return False, f"unreadable heartbeat at {path}: {exc}"
    age = ((now or datetime.now(UTC)) - at).total_seconds()
    if age > STALE_SECONDS:
        return False, f"serve's last heartbeat is {age:.0f} s old (process {state.get('pid')} hung or stopped)"
    if not state.get("connected"):
        return False, f"serve (process {state.get('pid')}) is running but its Socket Mode connection is down"
    if state.get("mode") == "http":
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.port}/healthz", timeout=5) as response:
                json.load(response)
        except (OSError, ValueError) as exc:
            return False, f"serve is running but GET /healthz on port {settings.port} failed: {exc}"
    return True, f"serve is healthy ({state.get('mode')} mode, process {state.get('pid')}, beat {age:.0f} s ago)"
