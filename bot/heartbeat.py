"""A claim kept alive while the work that holds it is: ``with heartbeat(beat, seconds): ...`` calls ``beat`` every
``seconds`` on a thread until the block ends, or until ``beat`` says the claim is lost (returns False). A failing
beat (a locked database, say) is logged and retried: one error must not let the claim lapse."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


@contextmanager
def heartbeat(beat: Callable[[], bool], seconds: float, name: str = "heartbeat") -> Iterator[threading.Event]:
    """Yields an event that is set when the claim was lost."""
    done, lost = threading.Event(), threading.Event()

    def run():
        while not done.wait(seconds):
            try:
                if not beat():
                    lost.set()
                    return
            except Exception:  # noqa: BLE001 - retried at the next beat
                logger.warning("%s failed; retrying", name, exc_info=True)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join(timeout=5)
