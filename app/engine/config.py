"""The engine's part of the configuration model (the whole model lives in app.config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.engine.profiles import KNOWN_COMPONENTS

DEFAULT_MIGRATING_COMPONENTS = ("scheduler", "api-server", "webserver", "web")


class MigrateStepConfig(BaseModel):
    """Bounds of the injected migrate step (all in the generated shell script)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_wait_attempts: int = Field(60, ge=1, le=10_000, description="connectivity checks before giving up")
    db_wait_interval_seconds: int = Field(5, ge=1, le=600, description="seconds between connectivity checks")
    migrate_attempts: int = Field(5, ge=1, le=100, description="migrate tries (racing pods, lock timeouts)")
    migrate_retry_interval_seconds: int = Field(10, ge=1, le=600, description="seconds between migrate tries")
    migrate_timeout_seconds: int = Field(
        3600, ge=60, le=86_400, description="upper bound of one `airflow db migrate` run"
    )


class EngineConfig(BaseModel):
    """What the engine needs to decide and build. Frozen: loaded once, passed down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    migrating_components: Literal["all"] | tuple[str, ...] = Field(
        DEFAULT_MIGRATING_COMPONENTS,
        description="components that get the step, or all (any case); an empty list or an unknown name is "
        "refused: it would inject nothing and deadlock",
    )
    admin_username: str = Field("user", min_length=1, description="Bitnami: admin user created if missing")
    step: MigrateStepConfig = MigrateStepConfig()

    @field_validator("migrating_components", mode="before")
    @classmethod
    def _normalise_components(cls, value: object) -> object:
        """`all` in any case and spacing, or a comma-separated string or list of known component names. A
        setting that names nothing, or only typos, would inject nothing and render exactly the manifests
        that deadlock: it is refused."""
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list | tuple):
            return value
        parts = tuple(str(part).strip().lower() for part in value if str(part).strip())
        if parts == ("all",):
            return "all"
        if not parts:
            raise ValueError(
                "names no component, so nothing would migrate and the pods would wait forever; "
                "give component names (e.g. scheduler,web) or all"
            )
        unknown = sorted(set(parts) - KNOWN_COMPONENTS)
        if unknown:
            raise ValueError(
                f"unknown component {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_COMPONENTS))} or all"
            )
        return parts

    def migrates(self, component: str | None) -> bool:
        if self.migrating_components == "all":
            return True
        return component is not None and component in self.migrating_components
