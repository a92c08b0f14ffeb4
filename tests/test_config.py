"""The one configuration path: file, then environment, then flags, for every section; the cross-field
checks; and the chart's values schema against the model it feeds."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from app.cli import build_parser
from app.config import OPTIONS, ConfigError, LogLevel, Settings, load_settings
from app.engine import names
from tests.support import REPO

CHART = REPO / "charts" / "airflow-migration-webhook"


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        {
            "server": {"port": 9000, "health_port": 9001},
            "namespace_label": {"key": "file/key"},
            "kubeconfig": "/f",
        },
    )
    assert load_settings(config, environ={}).server.port == 9000
    from_env = load_settings(config, environ={"AMW_PORT": "9100", "AMW_NAMESPACE_LABEL_KEY": "env/key"})
    assert (from_env.server.port, from_env.namespace_label.key) == (9100, "env/key")
    assert from_env.kubeconfig == Path("/f"), "a section no flag touched keeps the file's value"
    from_flags = load_settings(
        config,
        {"server.port": 9200, "namespace_label.key": "flag/key", "kubeconfig": None},
        environ={"AMW_PORT": "9100", "AMW_NAMESPACE_LABEL_KEY": "env/key"},
    )
    assert (from_flags.server.port, from_flags.namespace_label.key) == (9200, "flag/key")
    assert from_flags.kubeconfig == Path("/f"), "a flag not given (None) does not erase the file's value"


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", {"engine": {"admin_username": "admin"}})
    assert load_settings(environ={"AMW_CONFIG": str(config)}).engine.admin_username == "admin"


def test_reconcile_reads_the_kubeconfig_and_label_of_the_file(tmp_path: Path) -> None:
    """`reconcile` used to ignore the file's kubeconfig: every command now goes through the one loader."""
    config = write(tmp_path / "c.yaml", {"kubeconfig": "/from/file", "namespace_label": {"value": "yes"}})
    args = build_parser().parse_args(["reconcile", "--namespace", "x", "--config", str(config)])
    from app.cli import _settings

    settings = _settings(args, __import__("sys").stderr)
    assert settings is not None
    assert settings.kubeconfig == Path("/from/file")
    assert settings.namespace_label.selector == f"{names.NAMESPACE_LABEL}=yes"
    args = build_parser().parse_args(
        ["reconcile", "--namespace", "x", "--config", str(config), "--label-key", "k"]
    )
    settings = _settings(args, __import__("sys").stderr)
    assert settings is not None and settings.namespace_label.selector == "k=yes", (
        "the old flag name still works"
    )


@pytest.mark.parametrize(
    ("data", "environ", "message"),
    [
        ({"server": {"log_level": "verbose"}}, {}, "server.log_level"),
        ({}, {"AMW_LOG_LEVEL": "loud"}, "server.log_level (from AMW_LOG_LEVEL)"),
        ({"server": {"port": 8080}}, {}, "port and health_port are both 8080"),
        ({"reconcile": {"interval_seconds": 0}}, {}, "reconcile.interval_seconds"),
        (
            {
                "self_managed_tls": {
                    **{
                        k: "x"
                        for k in ("namespace", "secret_name", "lease_name", "webhook_configuration_name")
                    },
                    "validity_days": 7,
                }
            },
            {},
            "renew_before_days (30) must be less than validity_days (7)",
        ),
        (
            {
                "server": {"cert_file": "/elsewhere/tls.crt"},
                "self_managed_tls": {
                    k: "x" for k in ("namespace", "secret_name", "lease_name", "webhook_configuration_name")
                },
            },
            {},
            "self-managed TLS serves /certs/tls.crt",
        ),
        ({"namespace_label": {"key": ""}}, {}, "namespace_label.key"),
        ({"kubeconfig": {"not": "a path"}}, {}, "kubeconfig"),
    ],
)
def test_invalid_settings_name_the_field_and_where_it_was_set(
    tmp_path: Path, data: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path / "c.yaml", data), environ=environ)
    assert message in str(raised.value)


def test_log_level_is_case_insensitive() -> None:
    assert load_settings(environ={"AMW_LOG_LEVEL": " WARNING "}).server.log_level == "warning"


def test_every_option_has_one_flag_one_variable_and_a_config_key() -> None:
    flags = [option.flag for option in OPTIONS.values()]
    envs = [option.env for option in OPTIONS.values()]
    assert len(set(flags)) == len(flags) and len(set(envs)) == len(envs)
    for key, option in OPTIONS.items():
        assert option.env == "AMW_" + option.flag[2:].upper().replace("-", "_")
        model: type[BaseModel] = Settings
        *sections, field = key.split(".")
        for section in sections:
            model = _model_of(model.model_fields[section].annotation)
        assert field in model.model_fields, key


# --- the chart's schema and the model ----------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel]:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise AssertionError(f"{annotation} holds no model")


def chart_value_to_config_key() -> dict[str, str]:
    """`config.step.dbWaitAttempts` -> `engine.step.db_wait_attempts`, read from the ConfigMap template
    itself, so that a new mapping is checked without a table to keep in step."""
    body = (CHART / "templates" / "configmap.yaml").read_text().split("config.yaml: |", 1)[1]
    stack: list[tuple[int, str]] = []
    mapping: dict[str, str] = {}
    for line in body.splitlines():
        found = re.match(r"^(\s*)([a-z_]+):(.*)$", line)
        if not found:
            continue
        indent, key, rest = len(found[1]), found[2], found[3]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        reference = re.search(r"\.Values\.([A-Za-z.]+)", rest)
        if reference:
            mapping[reference[1]] = ".".join([k for _, k in stack] + [key])
        elif not rest.strip():
            stack.append((indent, key))
    return mapping


def model_bounds(key: str) -> tuple[float | None, float | None, Any]:
    model: type[BaseModel] = Settings
    *sections, name = key.split(".")
    for section in sections:
        model = _model_of(model.model_fields[section].annotation)
    field = model.model_fields[name]
    low = high = None
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = bound.ge
        elif isinstance(bound, annotated_types.Gt):
            low = bound.gt + 1e-9
        elif isinstance(bound, annotated_types.Le):
            high = bound.le
        elif isinstance(bound, annotated_types.Lt):
            high = bound.lt - 1e-9
    return low, high, field.annotation


def schema_at(path: str) -> dict[str, Any]:
    node = json.loads((CHART / "values.schema.json").read_text())
    for part in path.split("."):
        node = node.get("properties", {}).get(part, {})  # {}: the schema says nothing about it
    return node


def test_the_configmap_maps_the_values_it_should() -> None:
    mapping = chart_value_to_config_key()
    assert mapping["config.step.dbWaitAttempts"] == "engine.step.db_wait_attempts"
    assert mapping["reconcile.intervalSeconds"] == "reconcile.interval_seconds"
    assert mapping["webhook.namespaceLabel.key"] == "namespace_label.key"
    assert mapping["tls.selfManaged.renewBeforeDays"] == "self_managed_tls.renew_before_days"


@pytest.mark.parametrize("value", sorted(chart_value_to_config_key()))
def test_the_chart_schema_accepts_nothing_the_model_refuses(value: str) -> None:
    """A value the schema lets through but the server refuses is a crash loop after `helm install`."""
    key = chart_value_to_config_key()[value]
    low, high, annotation = model_bounds(key)
    schema = schema_at(value)
    if low is not None:
        assert "minimum" in schema and schema["minimum"] >= low, f"{value}: schema min vs {key} >= {low}"
    if high is not None:
        assert "maximum" in schema and schema["maximum"] <= high, f"{value}: schema max vs {key} <= {high}"
    if "enum" in schema and annotation is LogLevel:
        assert set(schema["enum"]) <= set(typing.get_args(LogLevel))


def test_chart_defaults_are_the_names_of_the_code() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["webhook"]["namespaceLabel"] == {
        "key": names.NAMESPACE_LABEL,
        "value": names.NAMESPACE_LABEL_VALUE,
    }
    webhook = (CHART / "templates" / "mutatingwebhookconfiguration.yaml").read_text()
    assert f"  - name: {names.WEBHOOK_NAME}\n" in webhook, "doctor finds the webhook by this name"
