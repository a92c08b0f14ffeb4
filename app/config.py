"""One configuration model for every front end: loaded once (file, then flags), passed down.

The engine receives only its own part (`EngineConfig`); the server its own; nothing reads globals.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.engine.config import EngineConfig

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8443, ge=1, le=65535)
    health_host: str = "0.0.0.0"
    health_port: int = Field(8080, ge=0, le=65535)
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=256 * 1024 * 1024)
    # answer well inside the API server's `timeout` (seconds; the smaller of the two wins)
    deadline_seconds: float = Field(4.0, gt=0, le=30)
    cert_reload_interval_seconds: float = Field(10.0, gt=0, le=3600)
    shutdown_grace_seconds: float = Field(20.0, ge=0, le=300)
    drain_delay_seconds: float = Field(2.0, ge=0, le=60, description="readyz false before closing listeners")
    log_level: str = "info"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineConfig = EngineConfig()
    server: ServerConfig = ServerConfig()


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names the file and the field."""


def load_settings(path: Path | None, server_overrides: dict[str, object] | None = None) -> Settings:
    """File first (if any), then non-None overrides from flags or environment."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read configuration {path}: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"configuration {path} must be a mapping with `engine` and/or `server`")
        data = loaded or {}
    overrides = {key: value for key, value in (server_overrides or {}).items() if value is not None}
    if overrides:
        server = data.get("server") or {}
        if not isinstance(server, dict):
            raise ConfigError(f"configuration {path}: `server` must be a mapping")
        data = {**data, "server": {**server, **overrides}}
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        where = f"configuration {path}" if path else "configuration"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid {where}: {problems}") from error
