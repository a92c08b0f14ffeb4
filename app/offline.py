"""The offline front end (`mutate`): manifests in, the same manifests with the webhook's additions out,
plus a report per object and, for a KRM function, `results` and the `functionConfig` settings.

No files, no terminal: the CLI reads the input and writes what this returns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from app.config import ConfigError, Settings, with_engine_settings
from app.engine import Decision, Outcome, Reason, mutate, release_of
from app.manifests import ManifestStream, StreamKind, parse_stream, render_stream


class NoObjects(ValueError):
    """The input holds no Kubernetes object: a failed `helm template` upstream, never a valid release."""


@dataclass(frozen=True)
class OfflineRun:
    output: str  # the manifests, in the input's shape (YAML stream, List, ResourceList)
    report: list[str]  # one line per reported object, then its warnings
    summary: str


def object_ref(obj: dict[str, object]) -> str:
    """Kind/namespace/name, or Kind/name when the object names no namespace (as `helm template` often
    renders them)."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    namespace = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{obj.get('kind', '?')}/{namespace}{metadata.get('name') or '?'}"


def summary(decisions: list[Decision]) -> str:
    """`39 objects, 4 mutated: 3 injected, 1 hook_job_marked, 35 unsupported_kind`."""
    counts = Counter(decision.reason.value for decision in decisions)
    mutated = sum(decision.outcome is Outcome.MUTATED for decision in decisions)
    noun = "object" if len(decisions) == 1 else "objects"
    by_reason = ", ".join(
        f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    )
    return f"{len(decisions)} {noun}, {mutated} mutated" + (f": {by_reason}" if by_reason else "")


def report_line(obj: dict[str, object], decision: Decision) -> str:
    extra = " ".join(
        f"{key}={value}"
        for key, value in (("profile", decision.profile), ("component", decision.component))
        if value
    )
    return (
        f"{object_ref(obj)}: {decision.outcome.value} {decision.reason.value}"
        + (f" ({extra})" if extra else "")
        + (f": {decision.detail}" if decision.detail else "")  # e.g. which object migrates without a hook
    )


def krm_results(obj: dict[str, object], decision: Decision) -> list[dict[str, object]]:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    ref = {
        key: value
        for key, value in (
            ("apiVersion", obj.get("apiVersion")),
            ("kind", obj.get("kind")),
            ("name", metadata.get("name")),
            ("namespace", metadata.get("namespace")),
        )
        if value
    }
    results: list[dict[str, object]] = [
        {
            "message": f"{decision.outcome.value} {decision.reason.value}: {decision.message}",
            "severity": "info",
            "resourceRef": ref,
        }
    ]
    results += [
        {"message": warning, "severity": "warning", "resourceRef": ref} for warning in decision.warnings
    ]
    return results


def function_config_settings(stream: ManifestStream, settings: Settings) -> Settings:
    """A KRM function's `functionConfig` overrides engine settings (`migrating_components: scheduler,web` or
    `all`, `admin_username`): a ConfigMap's `data`, or the `spec` of a typed config. Anything else is
    refused, never ignored: a setting that silently does nothing is how deadlocks ship."""
    function_config = (
        (stream.envelope or {}).get("functionConfig") if stream.kind is StreamKind.RESOURCE_LIST else None
    )
    if not function_config:
        return settings
    if not isinstance(function_config, dict):
        raise ConfigError("functionConfig must be a Kubernetes object (a ConfigMap with data, or spec)")
    engine = function_config.get("data", function_config.get("spec"))
    if engine is None:
        stray = sorted(set(function_config) - {"apiVersion", "kind", "metadata"})
        if not stray:
            return settings
        raise ConfigError(
            f"functionConfig carries {', '.join(stray)}: put the settings under data (a ConfigMap) or spec"
        )
    if not isinstance(engine, dict):
        raise ConfigError("functionConfig data/spec must be a mapping")
    return with_engine_settings(settings, engine, "functionConfig")


def mutate_manifests(text: str, settings: Settings, operation: str, quiet: bool) -> OfflineRun:
    """Raises UnreadableInput, ConfigError (functionConfig) or NoObjects; never for one object's content."""
    stream = parse_stream(text)
    engine = function_config_settings(stream, settings).engine
    if not stream.objects and stream.kind is StreamKind.DOCUMENTS:
        # a failed `helm template | mutate > airflow.yaml` must not commit an empty file
        raise NoObjects("no Kubernetes objects in the input")
    outputs: list[dict[str, object]] = []
    results: list[dict[str, object]] = []
    report: list[str] = []
    decisions: list[Decision] = []
    release = release_of(stream.objects)  # the stream is the release: its own migrators count
    for obj in stream.objects:
        result = mutate(obj, operation, engine, release)
        outputs.append(result.object)
        decision = result.decision
        decisions.append(decision)
        problem = decision.reason in (Reason.INVALID_OBJECT, Reason.ENGINE_ERROR)
        if result.changed or problem or decision.warnings or not quiet:
            report.append(report_line(obj, decision))
            report += [f"  warning: {warning}" for warning in decision.warnings]
        if stream.kind is StreamKind.RESOURCE_LIST:
            results += krm_results(obj, decision)
    return OfflineRun(render_stream(stream, outputs, results), report, summary(decisions))
