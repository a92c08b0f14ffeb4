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
    # reviews up to this size run the engine on the event loop (no thread hop; well under a millisecond);
    # bigger ones run in a worker thread under the deadline. 0: every review goes to the thread.
    inline_engine_max_bytes: int = Field(256 * 1024, ge=0, le=8 * 1024 * 1024)
    cert_reload_interval_seconds: float = Field(10.0, gt=0, le=3600)
    shutdown_grace_seconds: float = Field(20.0, ge=0, le=300)
    drain_delay_seconds: float = Field(2.0, ge=0, le=60, description="readyz false before closing listeners")
    log_level: str = "info"


class SelfManagedTLSConfig(BaseModel):
    """The server creates and renews its own CA and serving certificate (chart `tls.mode=selfManaged`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1)
    secret_name: str = Field(min_length=1)
    lease_name: str = Field(min_length=1)
    webhook_configuration_name: str = Field(min_length=1)
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    validity_days: int = Field(365, ge=2, le=3650)
    ca_validity_days: int = Field(3650, ge=2, le=36500)
    renew_before_days: int = Field(30, ge=1)
    sync_interval_seconds: float = Field(60.0, gt=0, le=3600)
    lease_duration_seconds: int = Field(30, ge=5, le=3600)
    startup_timeout_seconds: float = Field(120.0, gt=0)
    cert_dir: Path = Path("/certs")
    kubeconfig: Path | None = None  # None: in-cluster service account (or $KUBECONFIG)


class ReconcileConfig(BaseModel):
    """Fix workloads that already exist (created before the namespace was labelled or while the webhook was
    down); the same settings drive the `reconcile` command and the optional loop inside `serve`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace_label_key: str = "airflow-migration-webhook/inject"
    namespace_label_value: str = "enabled"
    # the loop inside `serve` (chart `reconcile.enabled`); the command ignores these
    enabled: bool = False
    interval_seconds: float = Field(300.0, gt=0)
    lease_namespace: str = ""
    lease_name: str = "airflow-migration-webhook-reconcile"
    lease_duration_seconds: int = Field(60, ge=5, le=3600)
    kubeconfig: Path | None = None


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineConfig = EngineConfig()
    server: ServerConfig = ServerConfig()
    self_managed_tls: SelfManagedTLSConfig | None = None
    reconcile: ReconcileConfig = ReconcileConfig()


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
        raise ConfigError(f"invalid {where}: {problems_of(error)}") from error


def problems_of(error: ValidationError) -> str:
    """One line: `field.path: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
    )
