"""Unit and property tests of the pure engine."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine import EngineConfig, Outcome, Reason, mutate
from app.engine.names import ARGOCD_SYNC_OPTIONS, STATUS, STEP_CONTAINER_NAME
from app.engine.versions import airflow_version, migrate_subcommand
from tests.support import CHART_RENDERS, golden_inputs, operation_of

CONFIG = EngineConfig()


@functools.cache
def _chart_objects() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted(CHART_RENDERS.glob("*.yaml")):
        docs += [doc for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if doc]
    return tuple(docs)


def workloads() -> list[dict[str, Any]]:
    """Fresh copies of the chart renders' workloads (parsed once per session)."""
    return [copy.deepcopy(d) for d in _chart_objects() if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def without_additions(output: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """`output` with exactly what the engine may add taken out again."""
    stripped = copy.deepcopy(output)
    annotations = stripped.get("metadata", {}).get("annotations", {})
    annotations.pop(STATUS, None)
    before = original.get("metadata", {}).get("annotations", {}) or {}
    if ARGOCD_SYNC_OPTIONS in annotations and annotations[ARGOCD_SYNC_OPTIONS] != before.get(
        ARGOCD_SYNC_OPTIONS
    ):
        added = annotations[ARGOCD_SYNC_OPTIONS]
        assert added.startswith(before.get(ARGOCD_SYNC_OPTIONS, "")) and added.endswith("Force=true")
        if ARGOCD_SYNC_OPTIONS in before:
            annotations[ARGOCD_SYNC_OPTIONS] = before[ARGOCD_SYNC_OPTIONS]
        else:
            del annotations[ARGOCD_SYNC_OPTIONS]
    if not annotations and "annotations" not in original.get("metadata", {}):
        stripped.get("metadata", {}).pop("annotations", None)
    spec = stripped.get("spec", {}).get("template", {}).get("spec") or stripped.get("spec", {})
    if "initContainers" in spec:
        spec["initContainers"] = [c for c in spec["initContainers"] if c.get("name") != STEP_CONTAINER_NAME]
        original_spec = original.get("spec", {}).get("template", {}).get("spec") or original.get("spec", {})
        if not spec["initContainers"] and "initContainers" not in original_spec:
            del spec["initContainers"]
    return stripped


# --- the chart renders -------------------------------------------------------------------------------


def test_chart_renders_inject_where_expected() -> None:
    decisions = {}
    for doc in workloads():
        result = mutate(doc, "CREATE", CONFIG)
        labels = doc["metadata"].get("labels", {})
        key = (labels.get("component") or labels.get("app.kubernetes.io/component"), doc["kind"])
        decisions.setdefault(key, set()).add(result.decision.reason)
    assert decisions[("scheduler", "Deployment")] == {Reason.INJECTED}
    assert decisions[("api-server", "Deployment")] == {Reason.INJECTED}
    assert decisions[("web", "Deployment")] == {Reason.INJECTED, Reason.SELF_MIGRATING}
    assert decisions[("worker", "StatefulSet")] == {Reason.COMPONENT_NOT_MIGRATING}
    assert decisions[("setup-db", "Job")] == {Reason.HOOK_JOB_MARKED}


@pytest.mark.parametrize("doc", workloads(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_step_is_placed_before_the_wait_container_and_after_prepare_config(doc: dict[str, Any]) -> None:
    result = mutate(doc, "CREATE", CONFIG)
    if result.decision.reason is not Reason.INJECTED:
        return
    names = [c["name"] for c in result.object["spec"]["template"]["spec"]["initContainers"]]
    assert names.count(STEP_CONTAINER_NAME) == 1
    step_at = names.index(STEP_CONTAINER_NAME)
    assert names[step_at + 1] in ("wait-for-airflow-migrations", "wait-for-db-migrations")
    if "prepare-config" in names:
        assert names.index("prepare-config") < step_at


def test_step_is_built_from_the_airflow_container() -> None:
    doc = next(
        d
        for d in workloads()
        if d["metadata"]["name"] == "airflow-scheduler"
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "airflow"
    )
    result = mutate(doc, "CREATE", CONFIG)
    pod = result.object["spec"]["template"]["spec"]
    main = pod["containers"][0]
    step = next(c for c in pod["initContainers"] if c["name"] == STEP_CONTAINER_NAME)
    assert step["image"] == main["image"]
    assert step["securityContext"] == main["securityContext"]
    assert step["resources"] == main["resources"]
    assert all(m in step["volumeMounts"] for m in main["volumeMounts"])
    env = {e["name"]: e.get("value") for e in step["env"]}
    assert env["AIRFLOW_USERNAME"] == "user"
    assert env["AIRFLOW_PASSWORD_FILE"] == "/opt/bitnami/airflow/secrets/airflow-password"
    script = step["command"][2]
    assert ". /opt/bitnami/scripts/libairflow.sh" in script
    assert 'airflow users create -r Admin -u "$AIRFLOW_USERNAME"' in script


def test_admin_username_comes_from_configuration() -> None:
    doc = next(
        d
        for d in workloads()
        if d["metadata"]["name"] == "airflow-scheduler"
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "airflow"
    )
    result = mutate(doc, "CREATE", EngineConfig(admin_username="admin"))
    step = next(
        c
        for c in result.object["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == STEP_CONTAINER_NAME
    )
    assert {"name": "AIRFLOW_USERNAME", "value": "admin"} in step["env"]


def test_migrating_components_can_be_all() -> None:
    worker = next(d for d in workloads() if d["metadata"]["name"] == "airflow-worker")
    assert mutate(worker, "CREATE", CONFIG).decision.reason is Reason.COMPONENT_NOT_MIGRATING
    assert (
        mutate(worker, "CREATE", EngineConfig(migrating_components="all")).decision.reason is Reason.INJECTED
    )
    only = EngineConfig.model_validate({"migrating_components": "worker, triggerer"})
    assert mutate(worker, "CREATE", only).decision.reason is Reason.INJECTED


def test_jobs_are_never_changed_on_update() -> None:
    for doc in workloads():
        if doc["kind"] == "Job":
            result = mutate(doc, "UPDATE", CONFIG)
            assert result.object is doc
            assert result.decision.outcome is Outcome.SKIPPED


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_skipped(operation: str) -> None:
    doc = workloads()[0]
    assert mutate(doc, operation, CONFIG).decision.reason is Reason.UNSUPPORTED_OPERATION


# --- versions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "version", "subcommand"),
    [
        ("apache/airflow:2.9.3", (2, 9, 3), "migrate"),
        ("docker.io/bitnami/airflow:3.0.1-debian-12-r1", (3, 0, 1), "migrate"),
        ("apache/airflow:2.10.5-python3.11", (2, 10, 5), "migrate"),
        ("apache/airflow:slim-2.6.3-python3.10", (2, 6, 3), "upgrade"),
        ("apache/airflow:2.5.3", (2, 5, 3), "upgrade"),
        ("apache/airflow:2.7.0", (2, 7, 0), "migrate"),
        ("registry:5000/airflow:v2.4", (2, 4, 0), "upgrade"),
        ("apache/airflow:latest-python3.11", None, "migrate"),
        ("apache/airflow", None, "migrate"),
        ("myorg/airflow@sha256:abc", None, "migrate"),
        ("registry:5000/airflow", None, "migrate"),
    ],
)
def test_version_from_image_tag(image: str, version: tuple[int, int, int] | None, subcommand: str) -> None:
    assert airflow_version(image) == version
    assert migrate_subcommand(airflow_version(image)) == subcommand


# --- malformed input never crashes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "oops"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": []}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": "x"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [1]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"tier": 3}}},
        {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "image": 5}]}},
        {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "env": {}}]}},
    ],
)
def test_malformed_objects_are_skipped_with_a_reason(obj: dict[str, Any]) -> None:
    result = mutate(obj, "CREATE", CONFIG)
    assert result.decision.reason is Reason.INVALID_OBJECT
    assert result.object is obj
    assert result.decision.detail


def test_non_mapping_is_invalid() -> None:
    assert mutate([1, 2], "CREATE", CONFIG).decision.reason is Reason.INVALID_OBJECT


def test_every_reason_has_a_message() -> None:
    for reason in Reason:
        assert reason.message and reason.value == reason.value.lower()


def test_the_reason_decides_the_outcome() -> None:
    """One vocabulary: a decision cannot say `mutated` for a reason that changes nothing, or the reverse."""
    mutating = {r for r in Reason if r.outcome is Outcome.MUTATED}
    assert mutating == {
        Reason.INJECTED,
        Reason.REINJECTED,
        Reason.HOOK_JOB_MARKED,
        Reason.JOB_FORCE_SYNC_ADDED,
        Reason.JOB_FORCE_SYNC_PRESENT,
    }
    assert {r for r in Reason if r.outcome is Outcome.UNCHANGED} == {Reason.UP_TO_DATE}
    assert {r for r in Reason if r.outcome is Outcome.ERROR} == {Reason.ENGINE_ERROR}
    seen = set()
    for source in golden_inputs():
        text = source.read_text()
        for doc in filter(None, yaml.safe_load_all(text)):
            result = mutate(doc, operation_of(text), CONFIG)
            seen.add(result.decision.reason)
            assert (result.object is doc) == (not result.changed)
            assert result.changed == (result.object != doc), f"{source.name}: {result.decision.reason}"
            again = mutate(result.object, operation_of(text), CONFIG)
            seen.add(again.decision.reason)
            assert not again.changed
    assert Reason.JOB_FORCE_SYNC_PRESENT in seen and Reason.UP_TO_DATE in seen


def test_an_engine_bug_is_an_engine_error_and_the_object_passes_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every adapter (HTTPS, CLI, reconcile) gets the same answer, because the engine gives it."""
    import sys

    engine = sys.modules["app.engine.mutate"]  # the package exports a function of the same name

    def broken(*_: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(engine, "recognise", broken)
    doc = workloads()[0]
    result = mutate(doc, "CREATE", CONFIG)
    assert result.decision.reason is Reason.ENGINE_ERROR and result.object is doc
    assert "KeyError" in (result.decision.detail or "")


# --- every mutated object is valid Kubernetes ---------------------------------------------------------


def test_mutated_objects_validate_against_the_kubernetes_schema() -> None:
    checked = 0
    for source in golden_inputs():
        text = source.read_text()
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            result = mutate(doc, operation_of(text), CONFIG)
            if result.changed:
                kubernetes_validate.validate(result.object, "1.30", strict=True)
                checked += 1
    assert checked >= 15


# --- properties --------------------------------------------------------------------------------------

POD_WORKLOADS = [d for d in workloads() if d["kind"] != "Job"]
TAGS = st.one_of(
    st.from_regex(r"[23]\.[0-9]{1,2}\.[0-9]{1,2}(-python3\.1[0-2]|-debian-12-r[0-9])?", fullmatch=True),
    st.sampled_from(["latest", "slim-latest", "main"]),
)


@st.composite
def airflow_workloads(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A chart workload with a random image tag, extra init containers, env, annotations and operation."""
    base = copy.deepcopy(draw(st.sampled_from(POD_WORKLOADS)))
    pod = base["spec"]["template"]["spec"]
    tag = draw(TAGS)
    for container in pod["containers"] + pod.get("initContainers", []):
        if "airflow" in container.get("image", ""):
            container["image"] = container["image"].rsplit(":", 1)[0] + ":" + tag
    extra = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=2))
    for name in extra:
        position = draw(st.integers(0, len(pod.get("initContainers", []))))
        pod.setdefault("initContainers", []).insert(position, {"name": f"extra-{name}", "image": "busybox"})
    env = draw(
        st.dictionaries(st.from_regex(r"[A-Z_]{1,8}", fullmatch=True), st.text(max_size=10), max_size=3)
    )
    pod["containers"][0].setdefault("env", []).extend({"name": k, "value": v} for k, v in env.items())
    if draw(st.booleans()):
        key = draw(st.sampled_from(["airflow-migration-webhook/migrate", "airflow-migration-webhook/inject"]))
        value = draw(st.sampled_from(["true", "false", "TRUE", "nope"]))
        base["metadata"].setdefault("annotations", {})[key] = value
    return base, draw(st.sampled_from(["CREATE", "UPDATE"]))


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_idempotent(case: tuple[dict[str, Any], str]) -> None:
    obj, operation = case
    once = mutate(obj, operation, CONFIG)
    twice = mutate(once.object, operation, CONFIG)
    assert twice.object == once.object
    assert twice.decision.outcome is not Outcome.MUTATED


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_additive(case: tuple[dict[str, Any], str]) -> None:
    obj, operation = case
    original = copy.deepcopy(obj)
    result = mutate(obj, operation, CONFIG)
    assert obj == original, "the input must never be modified in place"
    assert without_additions(result.object, original) == original


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_deterministic(case: tuple[dict[str, Any], str]) -> None:
    obj, operation = case
    first = mutate(copy.deepcopy(obj), operation, CONFIG)
    second = mutate(copy.deepcopy(obj), operation, CONFIG)
    assert json.dumps(first.object, sort_keys=True) == json.dumps(second.object, sort_keys=True)
    assert first.decision == second.decision


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_image_change_moves_the_step(case: tuple[dict[str, Any], str]) -> None:
    obj, _ = case
    first = mutate(obj, "CREATE", CONFIG)
    if first.decision.reason is not Reason.INJECTED:
        return
    bumped = copy.deepcopy(first.object)
    main = bumped["spec"]["template"]["spec"]["containers"][0]
    main["image"] = main["image"].rsplit(":", 1)[0] + ":9.9.9"
    second = mutate(bumped, "UPDATE", CONFIG)
    assert second.decision.reason is Reason.REINJECTED
    steps = [
        c
        for c in second.object["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == STEP_CONTAINER_NAME
    ]
    assert [s["image"] for s in steps] == [main["image"]]


NON_AIRFLOW_IMAGES = st.sampled_from(
    [
        "nginx:1.27",
        "postgres:16",
        "redis:7",
        "myorg/airflow-exporter:1.0",
        "airflow/pg-backup:2.1",
        "quay.io/prometheus/statsd-exporter:v0.28.0",
    ]
)


@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from([("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job")]),
    image=NON_AIRFLOW_IMAGES,
    args=st.lists(st.sampled_from(["run", "--airflow", "serve", "migrate", "db", "upgrade"]), max_size=4),
    labels=st.dictionaries(
        st.sampled_from(["app", "tier", "component", "app.kubernetes.io/name"]),
        st.sampled_from(["web", "backend", "scheduler", "postgresql"]),
        max_size=3,
    ),
    operation=st.sampled_from(["CREATE", "UPDATE"]),
)
def test_non_airflow_objects_are_never_changed(
    kind: tuple[str, str], image: str, args: list[str], labels: dict[str, str], operation: str
) -> None:
    obj = {
        "apiVersion": kind[0],
        "kind": kind[1],
        "metadata": {"name": "x", "labels": labels},
        "spec": {
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": image, "args": args}]},
            }
        },
    }
    original = copy.deepcopy(obj)
    result = mutate(obj, operation, CONFIG)
    assert result.object == original
    assert result.decision.outcome is Outcome.SKIPPED


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([("apps/v1", "Deployment"), ("batch/v1", "Job"), ("v1", "Pod"), ("v1", "Service")]),
    metadata=JSON,
    spec=JSON,
    operation=st.sampled_from(["CREATE", "UPDATE"]),
)
def test_arbitrary_shapes_never_raise(
    kind: tuple[str, str], metadata: Any, spec: Any, operation: str
) -> None:
    obj = {"apiVersion": kind[0], "kind": kind[1], "metadata": metadata, "spec": spec}
    original = copy.deepcopy(obj)
    result = mutate(obj, operation, CONFIG)
    assert obj == original
    assert isinstance(result.decision.reason, Reason)
