"""The one wall clock of the outer layers, passed in where time matters so that tests can fix it.

The engine never reads it: the engine has no notion of time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
