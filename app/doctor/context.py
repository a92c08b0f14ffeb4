"""What the checks know beside the Snapshot: the engine's settings, the opt-in label, the time, the
release, and the webhook's self-managed TLS settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.config import NamespaceLabel, SelfManagedTLSConfig
from app.engine import EngineConfig


@dataclass(frozen=True)
class Context:
    engine: EngineConfig
    label: NamespaceLabel
    now: dt.datetime
    release: str | None = None
    # the webhook's self-managed TLS settings (its ConfigMap), when it runs in that mode and they were read
    self_managed: SelfManagedTLSConfig | None = None
