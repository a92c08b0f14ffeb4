"""The engine's part of the configuration model (the whole model lives in app.config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MIGRATING_COMPONENTS = ("scheduler", "api-server", "webserver", "web")


class MigrateStepConfig(BaseModel):
    """Bounds of the injected migrate step (all in the generated shell script)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_wait_attempts: int = Field(60, ge=1, le=10_000, description="connectivity checks before giving up")
    db_wait_interval_seconds: int = Field(5, ge=1, le=600)
    migrate_attempts: int = Field(5, ge=1, le=100, description="migrate tries (racing pods, lock timeouts)")
    migrate_retry_interval_seconds: int = Field(10, ge=1, le=600)
    migrate_timeout_seconds: int = Field(
        3600, ge=60, le=86_400, description="upper bound of one `airflow db migrate` run"
    )


class EngineConfig(BaseModel):
    """What the engine needs to decide and build. Frozen: loaded once, passed down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    migrating_components: Literal["all"] | tuple[str, ...] = DEFAULT_MIGRATING_COMPONENTS
    admin_username: str = Field("user", min_length=1, description="Bitnami: admin user created if missing")
    step: MigrateStepConfig = MigrateStepConfig()

    @field_validator("migrating_components", mode="before")
    @classmethod
    def _normalise_components(cls, value: object) -> object:
        if isinstance(value, str) and value != "all":
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list):
            return tuple(value)
        return value

    def migrates(self, component: str | None) -> bool:
        if self.migrating_components == "all":
            return True
        return component is not None and component in self.migrating_components
