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

from app.engine import EngineConfig, Outcome, Reason, Release, mutate, release_of
from app.engine.names import ARGOCD_SYNC_OPTIONS, MIGRATE, STATUS, STEP_CONTAINER_NAME
from app.engine.versions import airflow_version, migrate_subcommand
from tests.support import CHART_RENDERS, golden_inputs, operation_of

CONFIG = EngineConfig()


@functools.cache
def _renders() -> dict[str, tuple[dict[str, Any], ...]]:
    """Each chart render's documents, by file stem (parsed once per session; never change them)."""
    return {
        path.stem: tuple(doc for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if doc)
        for path in sorted(CHART_RENDERS.glob("*.yaml"))
    }


def _chart_objects() -> tuple[dict[str, Any], ...]:
    return tuple(doc for docs in _renders().values() for doc in docs)


def render(stem: str) -> list[dict[str, Any]]:
    """Fresh copies of one chart render's documents."""
    return copy.deepcopy(list(_renders()[stem]))


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
    assert decisions[("db-migrations", "Job")] == {Reason.HOOK_JOB_MARKED}  # the community chart's
    assert decisions[("db-migrations", "Deployment")] == {Reason.SELF_MIGRATING}


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


# --- the community chart, and releases that already migrate without a hook --------------------------

COMMUNITY_DEFAULTS = "community-airflow-8.9.0-defaults"  # its migrator: a Deployment, no hook
COMMUNITY_RUNASJOB = "community-airflow-8.9.0-runasjob"  # its migrator: a post-install,post-upgrade hook Job


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_community_chart_is_recognised_by_its_labels_not_its_names_or_images() -> None:
    """Its workloads run `apache/airflow` images, which alone say `official`: its labels decide."""
    docs = render(COMMUNITY_RUNASJOB)
    for doc in docs:
        doc["metadata"]["name"] = "renamed-" + doc["metadata"]["name"]
    verdicts = {
        (d["kind"], d["metadata"]["labels"]["component"]): mutate(d, "CREATE", CONFIG).decision
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }
    assert {decision.profile for decision in verdicts.values()} == {"community"}
    assert verdicts[("Deployment", "scheduler")].reason is Reason.INJECTED
    assert verdicts[("Deployment", "web")].reason is Reason.INJECTED
    assert (
        verdicts[("Job", "db-migrations")].reason is Reason.HOOK_JOB_MARKED
    )  # a Python script's upgradedb()
    assert verdicts[("Deployment", "pgbouncer")].reason is Reason.NO_AIRFLOW_CONTAINER
    assert verdicts[("StatefulSet", "worker")].reason is Reason.COMPONENT_NOT_MIGRATING


def test_community_step_sits_between_check_db_and_the_chart_wait() -> None:
    scheduler = named(render(COMMUNITY_RUNASJOB), "Deployment", "airflow-scheduler")
    result = mutate(scheduler, "CREATE", CONFIG)
    inits = result.object["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["check-db", STEP_CONTAINER_NAME, "wait-for-db-migrations"]
    step = inits[1]
    assert "command" not in step and step["args"][:2] == [
        "bash",
        "-c",
    ]  # the image's entrypoint, as the chart
    assert "airflow db migrate" in step["args"][2]  # 2.8.4
    assert step["envFrom"] == inits[2]["envFrom"]


def test_community_migration_deployment_is_the_charts_own_migrator() -> None:
    migrator = named(render(COMMUNITY_DEFAULTS), "Deployment", "airflow-db-migrations")
    for config in (CONFIG, EngineConfig(migrating_components="all")):
        result = mutate(migrator, "CREATE", config)
        assert result.decision.reason is Reason.SELF_MIGRATING and result.object is migrator


@pytest.mark.parametrize(
    ("stem", "migrator"),
    [
        (COMMUNITY_DEFAULTS, "Deployment airflow-db-migrations is the chart's migrator"),
        (
            "apache-airflow-1.18.0-argocd",
            "Job airflow-run-airflow-migrations is a migration Job without a hook",
        ),
        (
            "bitnami-airflow-24.1.0-setupdbjob-disabled",
            "Deployment airflow-web migrates in its main container",
        ),
    ],
)
def test_a_release_that_migrates_without_a_hook_gets_no_step_and_says_why(stem: str, migrator: str) -> None:
    docs = render(stem)
    release = release_of(docs)
    scheduler = named(docs, "Deployment", "airflow-scheduler")
    result = mutate(scheduler, "CREATE", CONFIG, release)
    assert result.decision.reason is Reason.RELEASE_MIGRATES_WITHOUT_HOOK
    assert result.object is scheduler
    assert result.decision.detail is not None and result.decision.detail.startswith(migrator)
    # the webhook, seeing the scheduler alone, cannot know: it injects
    alone = mutate(scheduler, "CREATE", CONFIG)
    assert alone.decision.reason is Reason.INJECTED
    cannot_tell = [w for w in alone.decision.warnings if "cannot tell" in w]
    # ... and says so where the chart's default is hookless (the community chart), not where hooks are
    assert bool(cannot_tell) == (stem == COMMUNITY_DEFAULTS)
    # asking for the step explicitly still gets it
    scheduler["metadata"]["annotations"] = {MIGRATE: "true"}
    assert mutate(scheduler, "CREATE", CONFIG, release).decision.reason is Reason.INJECTED


@pytest.mark.parametrize(
    ("hooked", "hookless"),
    [
        (COMMUNITY_RUNASJOB, COMMUNITY_DEFAULTS),
        ("apache-airflow-1.18.0-defaults", "apache-airflow-1.18.0-argocd"),
        ("bitnami-airflow-24.1.0-defaults", "bitnami-airflow-24.1.0-setupdbjob-disabled"),
    ],
)
def test_the_webhook_cannot_tell_a_hookless_release_from_its_scheduler(hooked: str, hookless: str) -> None:
    """Why the webhook injects anyway: one object is all it sees, and the scheduler is the same in both."""
    assert named(render(hooked), "Deployment", "airflow-scheduler") == named(
        render(hookless), "Deployment", "airflow-scheduler"
    )
    assert not release_of(render(hooked)).migrators and release_of(render(hookless)).migrators


def test_a_release_with_a_hook_job_still_gets_its_step() -> None:
    for stem in (COMMUNITY_RUNASJOB, "apache-airflow-1.18.0-defaults", "bitnami-airflow-24.1.0-defaults"):
        docs = render(stem)
        assert release_of(docs).migrators == {}, stem
        scheduler = named(docs, "Deployment", "airflow-scheduler")
        result = mutate(scheduler, "CREATE", CONFIG, release_of(docs))
        assert result.decision.reason is Reason.INJECTED
        assert not [w for w in result.decision.warnings if "cannot tell" in w]


def test_another_release_or_namespace_is_not_judged_by_this_ones_migrator() -> None:
    docs = render(COMMUNITY_DEFAULTS)
    release = release_of(docs)
    scheduler = named(docs, "Deployment", "airflow-scheduler")
    other_release = copy.deepcopy(scheduler)
    for labels in (
        other_release["metadata"]["labels"],
        other_release["spec"]["template"]["metadata"]["labels"],
    ):
        labels["release"] = "other"
    assert mutate(other_release, "CREATE", CONFIG, release).decision.reason is Reason.INJECTED
    other_namespace = copy.deepcopy(scheduler)
    other_namespace["metadata"]["namespace"] = "elsewhere"
    assert mutate(other_namespace, "CREATE", CONFIG, release).decision.reason is Reason.INJECTED
    # the official chart's own `release` label names a different flavour's release
    official = named(render("apache-airflow-1.18.0-defaults"), "Deployment", "airflow-scheduler")
    assert mutate(official, "CREATE", CONFIG, release).decision.reason is Reason.INJECTED


def test_a_step_already_added_stays_when_the_release_turns_out_to_migrate_itself() -> None:
    """What the webhook added at admission (it could not know) is never removed: reconcile, which sees the
    namespace, says so and changes nothing."""
    docs = render(COMMUNITY_DEFAULTS)
    injected = mutate(named(docs, "Deployment", "airflow-scheduler"), "CREATE", CONFIG).object
    result = mutate(injected, "UPDATE", CONFIG, release_of([*docs, injected]))
    assert result.decision.reason is Reason.RELEASE_MIGRATES_WITHOUT_HOOK and result.object is injected
    assert "step already here stays" in (result.decision.detail or "")


def test_only_a_plain_migration_job_counts_as_migrating_without_a_hook() -> None:
    docs = render("apache-airflow-1.18.0-argocd")
    job = named(docs, "Job", "airflow-run-airflow-migrations")
    assert release_of([job]).migrators
    for hook in ({"helm.sh/hook": "post-install"}, {"argocd.argoproj.io/hook": "PostSync"}):
        hooked = copy.deepcopy(job)
        hooked["metadata"].setdefault("annotations", {}).update(hook)
        assert release_of([hooked]).migrators == {}
    create_user = named(docs, "Job", "airflow-create-user")  # a plain Job that does not migrate
    assert release_of([create_user]).migrators == {}


def test_malformed_objects_in_a_release_are_ignored() -> None:
    broken = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "oops"}, "text", None]
    assert release_of([*broken, *render(COMMUNITY_RUNASJOB)]).migrators == {}


# The community chart with `airflow.legacyCommands=true` (Airflow 1.10): its `check-db` runs `airflow checkdb`
# (charts/airflow/templates/_helpers/pods.tpl of airflow-helm/charts, `airflow.init_container.check_db`).
LEGACY_CHECK_DB = "exec timeout 60s airflow checkdb"


@pytest.mark.parametrize(
    ("tag", "check_db"),
    [
        ("1.10.15-python3.8", None),  # the image says Airflow 1
        ("latest", LEGACY_CHECK_DB),  # the image does not say; an Airflow 1 command does
        ("1.10.15-python3.8", LEGACY_CHECK_DB),
    ],
)
def test_airflow_1_is_refused_with_a_warning(tag: str, check_db: str | None) -> None:
    scheduler = named(render(COMMUNITY_RUNASJOB), "Deployment", "airflow-scheduler")
    pod = scheduler["spec"]["template"]["spec"]
    for container in pod["initContainers"] + pod["containers"]:
        container["image"] = f"apache/airflow:{tag}"
    if check_db is not None:
        pod["initContainers"][0]["args"][-1] = check_db
    result = mutate(scheduler, "CREATE", CONFIG)
    assert result.decision.reason is Reason.AIRFLOW_VERSION_UNSUPPORTED
    assert result.object is scheduler
    [warning] = result.decision.warnings
    said = "runs Airflow 1.10.15" if tag.startswith("1.") else "`airflow checkdb`, an Airflow 1.x command"
    assert said in warning
    # not for the version the step serves, nor for `airflow db check` or a migration script's upgradedb()
    assert mutate(
        named(render(COMMUNITY_RUNASJOB), "Deployment", "airflow-scheduler"), "CREATE", CONFIG
    ).changed


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

# (render, workload): each workload with the render it belongs to, whose release it may be judged in
POD_WORKLOADS = [
    (stem, doc)
    for stem, docs in _renders().items()
    for doc in docs
    if doc["kind"] in ("Deployment", "StatefulSet")
]
RELEASES = {stem: release_of(docs) for stem, docs in _renders().items()}
# the workloads of the renders whose release migrates without a hook (its own migrator is in the render)
HOOKLESS_WORKLOADS = [(stem, doc) for stem, doc in POD_WORKLOADS if RELEASES[stem].migrators]
TAGS = st.one_of(
    st.from_regex(r"[23]\.[0-9]{1,2}\.[0-9]{1,2}(-python3\.1[0-2]|-debian-12-r[0-9])?", fullmatch=True),
    st.sampled_from(["latest", "slim-latest", "main"]),
)
AIRFLOW_1_TAGS = st.from_regex(r"1\.10\.[0-9]{1,2}(-python3\.[6-8])?", fullmatch=True)
ANY_TAGS = st.one_of(TAGS, AIRFLOW_1_TAGS)
Case = tuple[dict[str, Any], str, Release | None]


@st.composite
def airflow_workloads(
    draw: st.DrawFn,
    pool: list[tuple[str, dict[str, Any]]] = POD_WORKLOADS,
    tags: st.SearchStrategy[str] = ANY_TAGS,
    in_release: bool | None = None,
) -> Case:
    """A chart workload with a random image tag, extra init containers, env, annotations and operation,
    judged alone (as the webhook does) or in the release of its render (as `mutate` and `reconcile` do);
    `in_release` None: either."""
    stem, picked = draw(st.sampled_from(pool))
    base = copy.deepcopy(picked)
    pod = base["spec"]["template"]["spec"]
    tag = draw(tags)
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
    choices = [None, RELEASES[stem]] if in_release is None else [RELEASES[stem] if in_release else None]
    return base, draw(st.sampled_from(["CREATE", "UPDATE"])), draw(st.sampled_from(choices))


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_idempotent(case: Case) -> None:
    obj, operation, release = case
    once = mutate(obj, operation, CONFIG, release)
    twice = mutate(once.object, operation, CONFIG, release)
    assert twice.object == once.object
    assert twice.decision.outcome is not Outcome.MUTATED


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_additive(case: Case) -> None:
    obj, operation, release = case
    original = copy.deepcopy(obj)
    result = mutate(obj, operation, CONFIG, release)
    assert obj == original, "the input must never be modified in place"
    assert without_additions(result.object, original) == original


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_deterministic(case: Case) -> None:
    obj, operation, release = case
    first = mutate(copy.deepcopy(obj), operation, CONFIG, release)
    second = mutate(copy.deepcopy(obj), operation, CONFIG, release)
    assert json.dumps(first.object, sort_keys=True) == json.dumps(second.object, sort_keys=True)
    assert first.decision == second.decision


@PROPERTY_SETTINGS
@given(airflow_workloads())
def test_image_change_moves_the_step(case: Case) -> None:
    obj, _, release = case
    first = mutate(obj, "CREATE", CONFIG, release)
    if first.decision.reason is not Reason.INJECTED:
        return
    bumped = copy.deepcopy(first.object)
    main = bumped["spec"]["template"]["spec"]["containers"][0]
    main["image"] = main["image"].rsplit(":", 1)[0] + ":9.9.9"
    second = mutate(bumped, "UPDATE", CONFIG, release)
    assert second.decision.reason is Reason.REINJECTED
    steps = [
        c
        for c in second.object["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == STEP_CONTAINER_NAME
    ]
    assert [s["image"] for s in steps] == [main["image"]]


@PROPERTY_SETTINGS
@given(airflow_workloads(tags=AIRFLOW_1_TAGS))
def test_airflow_1_is_never_given_a_step(case: Case) -> None:
    obj, operation, release = case
    result = mutate(obj, operation, CONFIG, release)
    assert not result.changed
    if result.decision.reason is Reason.AIRFLOW_VERSION_UNSUPPORTED:
        assert any("runs Airflow 1.10." in warning for warning in result.decision.warnings)


@PROPERTY_SETTINGS
@given(airflow_workloads(HOOKLESS_WORKLOADS, tags=TAGS))
def test_a_release_that_migrates_without_a_hook_gets_a_step_only_where_asked(case: Case) -> None:
    """Judged in its release, no workload gets a step unless its annotation asks; judged alone (the
    webhook), the migrating components get one, and on the community chart a warning that it cannot tell."""
    obj, operation, release = case
    result = mutate(obj, operation, CONFIG, release)
    asked = (obj["metadata"].get("annotations") or {}).get(MIGRATE, "").strip().lower() == "true"
    if release is not None and not asked:
        assert not result.changed
    if (
        release is None
        and result.decision.reason is Reason.INJECTED
        and result.decision.profile == "community"
    ):
        assert any("cannot tell" in warning for warning in result.decision.warnings)


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
