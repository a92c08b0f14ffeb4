"""The pure injection engine: object + operation + configuration in, object + decision out.

Nothing in this package performs I/O, reads a clock or talks to an API; every front end (the HTTPS
webhook, the offline CLI, reconcile) is a thin adapter over `mutate`; those that see a whole release pass
what they know of it (`release_of`).
"""

from app.engine.config import EngineConfig
from app.engine.decision import Decision, Outcome, Reason
from app.engine.inspect import PodFacts, inspect
from app.engine.mutate import ENGINE_VERSION, MutationResult, mutate
from app.engine.names import STEP_CONTAINER_NAME
from app.engine.release import Release, release_of

__all__ = [
    "ENGINE_VERSION",
    "STEP_CONTAINER_NAME",
    "Decision",
    "EngineConfig",
    "MutationResult",
    "Outcome",
    "PodFacts",
    "Reason",
    "Release",
    "inspect",
    "mutate",
    "release_of",
]
