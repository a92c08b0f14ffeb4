"""One configuration model and one loader for every front end and every section.

Layers, each over the one before: the model's defaults, the configuration file (`--config` or
`AMW_CONFIG`), the environment, the command's flags. Every option has one name per layer, all derived
from one row of OPTIONS: config key `server.cert_file`, flag `--cert-file`, environment `AMW_CERT_FILE`.
The engine receives only its own part (`EngineConfig`); nothing reads globals.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.engine import names
from app.engine.config import EngineConfig

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
ENV_PREFIX = "AMW_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8443, ge=1, le=65535)
    health_host: str = "0.0.0.0"
    health_port: int = Field(8080, ge=0, le=65535, description="0: no health listener")
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=256 * 1024 * 1024)
    deadline_seconds: float = Field(
        4.0,
        gt=0,
        le=30,
        description="answer within this time; never more than 80% of the API server's ?timeout=",
    )
    inline_engine_max_bytes: int = Field(
        256 * 1024,
        ge=0,
        le=8 * 1024 * 1024,
        description="smaller reviews run the engine on the event loop (no thread hop); bigger ones in a "
        "worker thread under the deadline; 0: every review in the thread",
    )
    cert_reload_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="how often the certificate files are checked for a change"
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, le=300, description="on SIGTERM, how long requests in flight may take to finish"
    )
    drain_delay_seconds: float = Field(2.0, ge=0, le=60, description="readyz false before closing listeners")
    log_level: LogLevel = "info"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerConfig:
        if self.health_port == self.port:
            raise ValueError(f"port and health_port are both {self.port}; give them different ports")
        return self


class NamespaceLabel(BaseModel):
    """The label that opts a namespace in (chart `webhook.namespaceLabel`): the webhook configuration's
    namespaceSelector, `reconcile` and `doctor` all select on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(names.NAMESPACE_LABEL, min_length=1, max_length=317)
    value: str = Field(names.NAMESPACE_LABEL_VALUE, max_length=63)

    @property
    def selector(self) -> str:
        return f"{self.key}={self.value}"


class SelfManagedTLSConfig(BaseModel):
    """The server creates and renews its own CA and serving certificate (chart `tls.mode=selfManaged`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1, description="where the Secret and the Lease live")
    secret_name: str = Field(min_length=1, description="the Secret holding the CA and the serving pair")
    lease_name: str = Field(min_length=1, description="the Lease that lets one replica at a time write")
    webhook_configuration_name: str = Field(
        min_length=1, description="the MutatingWebhookConfiguration whose caBundle is kept current"
    )
    dns_names: tuple[str, ...] = Field((), description="names in the serving certificate")
    ip_addresses: tuple[str, ...] = Field((), description="IP addresses in the serving certificate")
    validity_days: int = Field(365, ge=2, le=3650, description="serving certificate validity")
    ca_validity_days: int = Field(3650, ge=2, le=36500, description="CA validity")
    renew_before_days: int = Field(
        30, ge=1, description="renew this long before expiry; less than both validities"
    )
    sync_interval_seconds: float = Field(
        60.0, gt=0, le=3600, description="how often the Secret and the caBundle are checked"
    )
    lease_duration_seconds: int = Field(30, ge=5, le=3600, description="the writer's Lease term")
    startup_timeout_seconds: float = Field(
        120.0, gt=0, description="how long start-up waits for a serving pair in the Secret"
    )
    cert_dir: Path = Field(Path("/certs"), description="serve listens with cert_dir/tls.crt and tls.key")

    @model_validator(mode="after")
    def _renewal_inside_validity(self) -> SelfManagedTLSConfig:
        # cert-manager refuses the same pair: a window as long as the validity re-issues on every sync
        for field, days in (
            ("validity_days", self.validity_days),
            ("ca_validity_days", self.ca_validity_days),
        ):
            if self.renew_before_days >= days:
                raise ValueError(
                    f"renew_before_days ({self.renew_before_days}) must be less than {field} ({days}): "
                    "the certificate would be renewed on every sync"
                )
        return self

    @property
    def cert_file(self) -> Path:
        return self.cert_dir / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.cert_dir / "tls.key"


class ReconcileConfig(BaseModel):
    """The reconcile loop inside `serve` (chart `reconcile.*`); the `reconcile` command uses none of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="run the reconcile loop inside serve")
    interval_seconds: float = Field(
        300.0, ge=1, le=86_400, description="time between passes (the chart asks >= 10)"
    )
    lease_namespace: str = Field("", description="the Lease's namespace; \"\": the pod's own namespace")
    lease_name: str = Field(
        "airflow-migration-webhook-reconcile",
        min_length=1,
        description="the Lease that lets one replica at a time reconcile",
    )
    lease_duration_seconds: int = Field(60, ge=5, le=3600, description="the reconciler's Lease term")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineConfig = EngineConfig()
    server: ServerConfig = ServerConfig()
    namespace_label: NamespaceLabel = NamespaceLabel()
    kubeconfig: Path | None = None  # every API client; None: $KUBECONFIG, else the in-cluster account
    # absent: TLS from files; present: serve makes and renews its own pair (chart tls.mode=selfManaged)
    reconcile: ReconcileConfig = ReconcileConfig()
    self_managed_tls: SelfManagedTLSConfig | None = None

    @model_validator(mode="after")
    def _self_managed_serves_its_own_files(self) -> Settings:
        """Self-managed TLS serves the pair it writes to cert_dir; a different --cert-file would be
        ignored, so it is refused instead."""
        tls = self.self_managed_tls
        if tls is None:
            return self
        for field, own in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            given = getattr(self.server, field)
            if given is not None and Path(given) != own:
                raise ValueError(
                    f"server.{field} is {given}, but self-managed TLS serves {own} "
                    "(self_managed_tls.cert_dir); drop the one or make them agree"
                )
        return self

    @property
    def serving_pair(self) -> tuple[Path, Path] | None:
        """The certificate and key `serve` listens with: self-managed TLS's, else the configured files."""
        if self.self_managed_tls is not None:
            return self.self_managed_tls.cert_file, self.self_managed_tls.key_file
        if self.server.cert_file is None or self.server.key_file is None:
            return None
        return self.server.cert_file, self.server.key_file


@dataclass(frozen=True)
class Option:
    """One setting that flags and the environment can set: config key, flag and env name in one row."""

    key: str  # dotted path in the configuration file, e.g. server.cert_file
    flag: str
    help: str
    parse: Callable[[str], object] = str  # what argparse turns the flag's text into

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.lstrip("-").upper().replace("-", "_")


OPTIONS: dict[str, Option] = {
    option.key: option
    for option in (
        Option("server.cert_file", "--cert-file", "serving certificate (PEM)", Path),
        Option("server.key_file", "--key-file", "its key", Path),
        Option(
            "server.client_ca_file", "--client-ca-file", "require client certificates signed by this CA", Path
        ),
        Option("server.port", "--port", "HTTPS webhook port, default 8443", int),
        Option(
            "server.health_port",
            "--health-port",
            "plain-HTTP /healthz /readyz /metrics port, default 8080",
            int,
        ),
        Option("server.host", "--host", "HTTPS listen address, default 0.0.0.0"),
        Option("server.health_host", "--health-host", "health and metrics listen address, default 0.0.0.0"),
        Option("server.max_body_bytes", "--max-body-bytes", "request body cap, default 8 MiB", int),
        Option("server.log_level", "--log-level", "debug|info|warning|error|critical, default info"),
        Option(
            "namespace_label.key",
            "--namespace-label-key",
            f"opt-in label key, default {names.NAMESPACE_LABEL}",
        ),
        Option(
            "namespace_label.value",
            "--namespace-label-value",
            f"opt-in label value, default {names.NAMESPACE_LABEL_VALUE}",
        ),
        Option("kubeconfig", "--kubeconfig", "kubeconfig file; default $KUBECONFIG, else in-cluster", Path),
    )
}


class ConfigError(ValueError):
    """The configuration is unreadable or invalid; the message names the field and where it was set."""


def load_settings(
    path: Path | None = None,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the file (`path`, else $AMW_CONFIG), then the environment, then the flags (config key
    -> value; None means not given)."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    data = _read(path) if path is not None else {}
    origins: dict[str, str] = {}
    for option in OPTIONS.values():
        text = environ.get(option.env)
        if text:
            data = _with_value(data, option.key, text)
            origins[option.key] = option.env
    for key, given in (flags or {}).items():
        if given is not None:
            data = _with_value(data, key, given)
            origins[key] = OPTIONS[key].flag if key in OPTIONS else key
    return _validate(data, f"configuration {path}" if path else "configuration", origins)


def parse_settings(text: str, where: str) -> Settings:
    """A configuration file's text, checked like a file (doctor reads the webhook's own ConfigMap)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot read {where}: {error}") from error
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{where} must be a mapping of sections (engine, server, ...)")
    return _validate(loaded or {}, where, {})


def with_engine_settings(settings: Settings, engine: Mapping[str, Any], where: str) -> Settings:
    """`settings` with engine keys laid over it (a KRM functionConfig), checked like the file; errors name
    the keys as `where` spells them."""
    try:
        merged = EngineConfig.model_validate(_merged(settings.engine.model_dump(), dict(engine)))
    except ValidationError as error:
        raise ConfigError(f"invalid {where}: {problems_of(error)}") from error
    return settings.model_copy(update={"engine": merged})


def _read(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read configuration {path}: {error}") from error
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"configuration {path} must be a mapping of sections (engine, server, ...)")
    return loaded or {}


def _with_value(data: dict[str, Any], key: str, value: object) -> dict[str, Any]:
    head, _, rest = key.partition(".")
    if not rest:
        return {**data, head: value}
    section = data.get(head)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"configuration: `{head}` must be a mapping")
    return {**data, head: _with_value(section, rest, value)}


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_maps else value
    return merged


def _validate(data: dict[str, Any], where: str, origins: Mapping[str, str]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid {where}: {problems_of(error, origins)}") from error


def problems_of(error: ValidationError, origins: Mapping[str, str] | None = None) -> str:
    """One line: `field.path: message; ...`, naming the flag or variable that set a field."""
    problems = []
    for problem in error.errors(include_url=False):
        key = ".".join(str(part) for part in problem["loc"])
        origin = next((o for k, o in (origins or {}).items() if key == k or key.startswith(k + ".")), None)
        problems.append(f"{key}{f' (from {origin})' if origin else ''}: {problem['msg']}")
    return "; ".join(problems)
