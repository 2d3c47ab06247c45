"""Who holds a claim or runs a scan: this process's name, whether a holder's process is gone, and the leases after
which a holder that stopped beating is taken for gone."""
from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

SCAN_LEASE = timedelta(minutes=15)  # a running scan whose heartbeat is older than this was abandoned
CLAIM_LEASE = timedelta(minutes=10)  # a claim (one change, one scan) whose holder stopped beating this long is free
HEARTBEAT_SECONDS = 60.0


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        return "?"


# host:pid:nonce:pid-namespace of this process. The nonce tells a restarted container's PID 1 from its
# predecessor; the namespace tells containers that share a host name (host networking) apart.
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"


def holder_is_dead(holder: str | None) -> bool:
    """True when ``holder`` is a process of this host and PID namespace that no longer runs (or an earlier one
    with our PID). Anything else (another machine, another container) only its heartbeat can tell."""
    host, pid, _, namespace = ((holder or "").split(":") + ["", "", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit() or namespace != _pid_namespace() or namespace == "?":
        return False
    if int(pid) == os.getpid():
        return holder != PROCESS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
