"""sqlite-utils, imported without pandas and numpy. sqlite-utils imports both whenever they are installed, only to
convert their values, which the store never passes it: numpy is installed beside pyarrow and matplotlib (90 ms at
every start), pandas often (0.2 s and 68 MB more in every process)."""
from __future__ import annotations

import sys
import threading

_importing = threading.Lock()


def _without_dataframes():
    with _importing:
        if "sqlite_utils" in sys.modules:
            return sys.modules["sqlite_utils"]
        # a None entry makes `import pandas` raise ImportError; set only for modules not imported yet, and
        # removed at once, so a later import (the CUR's pyarrow, the report's matplotlib) loads them as usual.
        # Only while this is the process's one thread: another could be importing numpy (or pyarrow, which would
        # then record numpy as missing) in that window, so with others alive sqlite-utils is imported as it is
        alone = threading.active_count() == 1
        blocked = [name for name in ("pandas", "numpy") if alone and name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            import sqlite_utils
        finally:
            for name in blocked:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
        return sqlite_utils


_sqlite_utils = _without_dataframes()
Database, Migrations = _sqlite_utils.Database, _sqlite_utils.Migrations
