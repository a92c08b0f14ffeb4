"""The Argo CD sync the tests drive (tests/argocd.py): its reading of the real chart renders, its health
rules, and its sync loop, first against an in-memory API, then (e2e) against a real kube-apiserver."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.argocd import (
    HOOK_FINALIZER,
    KIND_ORDER,
    TRACKING_ID,
    ArgoSync,
    Health,
    Task,
    delete_policies,
    deployment_health,
    health,
    is_hook,
    job_health,
    plan,
    pod_health,
    pvc_health,
    service_health,
    statefulset_health,
    sync_phases,
    wave,
)
from tests.cluster import Cluster
from tests.support import CHART_RENDERS, FIXTURES, render_objects
from tests.test_chart import helm

APACHE = (CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml").read_text()
BITNAMI = (CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml").read_text()
Key = tuple[str, str, str, str]


def obj(kind: str = "ConfigMap", api: str = "v1", name: str = "x", **annotations: str) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "annotations": annotations}}


def status(result: Health) -> str:
    assert result is not None
    return result[0]


def by_ref(tasks: list[Task]) -> dict[str, Task]:
    return {t.ref: t for t in tasks}


# --- what Argo CD makes of the real renders ---------------------------------------------------------


def test_apache_render_migration_and_user_jobs_are_postsync_after_the_workloads() -> None:
    tasks = plan(APACHE, "airflow")
    refs = by_ref(tasks)
    migrate, user = refs["batch/Job/airflow-run-airflow-migrations"], refs["batch/Job/airflow-create-user"]
    assert (migrate.phase, migrate.wave, migrate.hook) == ("PostSync", 1, True)
    assert (user.phase, user.wave, user.hook) == ("PostSync", 2, True)
    assert tasks.index(migrate) < tasks.index(user)
    assert delete_policies(migrate.obj) == ["BeforeHookCreation", "HookSucceeded"]
    for name in ("api-server", "scheduler", "dag-processor"):
        assert refs[f"apps/Deployment/airflow-{name}"].phase == "Sync"
    assert refs["apps/StatefulSet/airflow-triggerer"].phase == "Sync"
    # the chart's pre-install Secrets (random keys generated once by Helm) become PreSync hooks
    assert refs["/Secret/airflow-fernet-key"].phase == "PreSync"
    assert tasks.index(refs["/Secret/airflow-fernet-key"]) < tasks.index(refs["/Secret/airflow-metadata"])


def test_bitnami_render_setup_job_is_a_postsync_hook() -> None:
    refs = by_ref(plan(BITNAMI, "airflow"))
    setup = refs["batch/Job/airflow-setup-db"]
    assert (setup.phase, setup.wave, setup.hook) == ("PostSync", 0, True)
    assert delete_policies(setup.obj) == ["BeforeHookCreation", "HookSucceeded"]
    assert {refs[r].phase for r in refs if r.startswith("apps/")} == {"Sync"}


@pytest.mark.parametrize("render", [APACHE, BITNAMI], ids=["apache", "bitnami"])
def test_tasks_are_ordered_by_phase_wave_kind_name(render: str) -> None:
    tasks = plan(render, "airflow")
    keys = [
        ({"PreSync": -1, "Sync": 0, "PostSync": 1}[t.phase], t.wave, KIND_ORDER.get(t.kind, 0), t.name)
        for t in tasks
    ]
    assert keys == sorted(keys)
    kinds = [t.kind for t in tasks if t.phase == "Sync"]
    # Helm's install order: accounts and config before RBAC, Services, then workloads
    assert (
        kinds.index("ServiceAccount")
        < kinds.index("Secret")
        < kinds.index("ConfigMap")
        < kinds.index("Service")
    )
    assert kinds.index("Service") < kinds.index("Deployment") < kinds.index("StatefulSet")


def test_every_object_is_tracked_namespaced_and_hooks_carry_the_finalizer() -> None:
    docs = [d for d in yaml.load_all(APACHE, Loader=yaml.CSafeLoader) if d]
    given = {(d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in docs}
    assert set(given.values()) == {"airflow", None}  # helm template sets it on some objects only
    for task in plan(APACHE, "ns1", app="myapp"):
        meta = task.obj["metadata"]
        namespace = given[task.kind, task.name] or "ns1"
        assert meta["namespace"] == namespace
        group = task.ref.rsplit("/", 2)[0]
        assert meta["annotations"][TRACKING_ID] == f"myapp:{group}/{task.kind}:{namespace}/{task.name}"
        assert (HOOK_FINALIZER in (meta.get("finalizers") or [])) == task.hook


# --- the values for the single-node cluster (tests/fixtures/node-values), rendered by the real helm -----

NODE = {
    "apache": ("apache-airflow-1.18.0", "data.metadataConnection", "localhost/amw-airflow:3.0.2"),
    "bitnami": ("bitnami-airflow-24.1.0", "externalDatabase", "localhost/amw-bitnami-airflow:3.0.2"),
}


def node_render(flavour: str) -> str:
    chart, db, _ = NODE[flavour]
    return helm(
        "template", "airflow", str(FIXTURES / "chart-sources" / f"{chart}.tgz"), "-n", "airflow",
        "-f", str(FIXTURES / "node-values" / f"{chart}.yaml"), "--kube-version", "1.32.0",
        "--set", f"{db}.host=10.200.0.1", "--set", f"{db}.port=5433",
    ).stdout  # fmt: skip


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {}
    for doc in docs:
        template = (doc.get("spec") or {}).get("template") or {}
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = template["spec"]
    return specs


@pytest.mark.parametrize("flavour", ["apache", "bitnami"])
def test_node_values_render_a_release_a_registry_less_single_node_cluster_can_run(flavour: str) -> None:
    text = node_render(flavour)
    assert text == node_render(flavour)  # fixed keys and passwords: every render is the same
    docs = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]
    specs = pod_specs(docs)
    containers = [c for spec in specs.values() for c in spec.get("initContainers", []) + spec["containers"]]
    assert {c["image"] for c in containers} == {NODE[flavour][2]}
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}
    assert not [c["name"] for c in containers if (c.get("resources") or {}).get("requests")]
    # no storage provisioner: no claim anywhere
    assert "PersistentVolumeClaim" not in {d["kind"] for d in docs}
    assert not [d["metadata"]["name"] for d in docs if (d.get("spec") or {}).get("volumeClaimTemplates")]
    assert not [v for spec in specs.values() for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]
    refs = by_ref(plan(text, "airflow"))
    wait = {"apache": "wait-for-airflow-migrations", "bitnami": "wait-for-db-migrations"}[flavour]
    workloads = [n for n in specs if not n.startswith("Job/")]
    assert workloads and all(wait in [c["name"] for c in specs[n]["initContainers"]] for n in workloads)
    if flavour == "apache":
        assert sorted(workloads) == [
            "Deployment/airflow-api-server",
            "Deployment/airflow-dag-processor",
            "Deployment/airflow-scheduler",
            "Deployment/airflow-triggerer",
        ]
        migrate, user = (
            refs["batch/Job/airflow-run-airflow-migrations"],
            refs["batch/Job/airflow-create-user"],
        )
        assert (migrate.phase, migrate.wave, user.phase, user.wave) == ("PostSync", 1, "PostSync", 2)
        connection = render_objects(docs)[1]["airflow-metadata"]["connection"]
        assert connection == "postgresql://postgres:postgres@10.200.0.1:5433/airflow?sslmode=disable"
    else:
        assert sorted(workloads) == [
            "Deployment/airflow-dag-processor",
            "Deployment/airflow-web",
            "StatefulSet/airflow-scheduler",
            "StatefulSet/airflow-triggerer",
        ]
        assert refs["batch/Job/airflow-setup-db"].phase == "PostSync"
        setup = specs["Job/airflow-setup-db"]
        env = {e["name"]: e.get("value") for c in setup["initContainers"] for e in c.get("env", [])}
        assert (env["AIRFLOW_DATABASE_HOST"], env["AIRFLOW_DATABASE_PORT_NUMBER"]) == ("10.200.0.1", "5433")


# --- hook and wave rules on hand-written objects -----------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "phases"),
    [
        ({}, ["Sync"]),
        ({"helm.sh/hook": "pre-install"}, ["PreSync"]),
        ({"helm.sh/hook": "pre-upgrade"}, ["PreSync"]),
        ({"helm.sh/hook": "post-install,post-upgrade"}, ["PostSync"]),
        ({"helm.sh/hook": "pre-install,post-install"}, ["PreSync", "PostSync"]),
        ({"helm.sh/hook": "test"}, []),  # dropped: no Argo CD equivalent
        ({"helm.sh/hook": "test-success"}, []),
        ({"helm.sh/hook": "pre-rollback"}, []),
        ({"helm.sh/hook": "pre-delete"}, []),  # PreDelete runs only when the app is deleted
        ({"helm.sh/hook": ""}, []),  # an empty hook drops the object
        ({"helm.sh/hook": "crd-install"}, ["Sync"]),  # an ordinary resource
        ({"argocd.argoproj.io/hook": "Sync", "helm.sh/hook": "post-install"}, ["Sync"]),  # Argo CD's wins
        ({"argocd.argoproj.io/hook": "PreSync,PostSync"}, ["PreSync", "PostSync"]),
        ({"argocd.argoproj.io/hook": "Skip"}, []),
        ({"argocd.argoproj.io/hook": "SyncFail"}, []),  # not run by these tests
        ({"argocd.argoproj.io/hook": "Bogus", "helm.sh/hook": "pre-install"}, ["PreSync"]),
    ],
)
def test_phases(annotations: dict[str, str], phases: list[str]) -> None:
    assert sync_phases(obj(**annotations)) == phases


def test_hook_detection() -> None:
    assert not is_hook(obj())
    assert is_hook(obj(**{"helm.sh/hook": "test"}))  # a hook, with no phase: never run
    assert not is_hook(obj(**{"helm.sh/hook": "crd-install"}))
    assert not is_hook(obj(**{"argocd.argoproj.io/hook": "Skip"}))


def test_waves() -> None:
    assert wave(obj()) == 0
    assert wave(obj(**{"helm.sh/hook-weight": "-5"})) == -5
    assert wave(obj(**{"argocd.argoproj.io/sync-wave": "3", "helm.sh/hook-weight": "1"})) == 3
    assert wave(obj(**{"argocd.argoproj.io/sync-wave": "x", "helm.sh/hook-weight": "2"})) == 2
    assert wave(obj(**{"helm.sh/hook-weight": "heavy"})) == 0


def test_delete_policies() -> None:
    assert delete_policies(obj()) == ["BeforeHookCreation"]
    helm = {"helm.sh/hook-delete-policy": "hook-succeeded, hook-failed"}
    assert delete_policies(obj(**helm)) == ["HookSucceeded", "HookFailed"]
    both = {
        "argocd.argoproj.io/hook-delete-policy": "HookFailed",
        "helm.sh/hook-delete-policy": "before-hook-creation",
    }
    assert delete_policies(obj(**both)) == ["HookFailed", "BeforeHookCreation"]
    assert delete_policies(obj(**{"helm.sh/hook-delete-policy": "keep"})) == ["BeforeHookCreation"]


def test_cluster_scoped_and_explicit_namespaces() -> None:
    manifest = yaml.safe_dump_all(
        [
            obj("ClusterRole", "rbac.authorization.k8s.io/v1", "reader"),
            {**obj(name="elsewhere"), "metadata": {"name": "elsewhere", "namespace": "other"}},
            obj(name="here"),
        ]
    )
    namespaces = {t.name: t.obj["metadata"].get("namespace") for t in plan(manifest, "mine")}
    assert namespaces == {"reader": None, "elsewhere": "other", "here": "mine"}


# --- health ------------------------------------------------------------------------------------------


def workload(kind: str, spec: dict[str, Any], status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    meta = {"name": "w", "generation": generation}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("spec", "state", "generation", "expected"),
    [
        ({"replicas": 1}, {}, 1, "Progressing"),  # never observed: no controller, or pods not created yet
        ({"replicas": 1, "paused": True}, {}, 1, "Suspended"),
        ({"replicas": 1}, {"observedGeneration": 1, "updatedReplicas": 0}, 1, "Progressing"),
        ({"replicas": 1}, {"observedGeneration": 1, "updatedReplicas": 1, "replicas": 2}, 1, "Progressing"),
        ({"replicas": 1}, {"observedGeneration": 1, "updatedReplicas": 1, "replicas": 1}, 1, "Progressing"),
        (
            {"replicas": 1},
            {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 1, "availableReplicas": 1},
            2,
            "Healthy",
        ),
        (
            {"replicas": 1},
            {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1},
            2,
            "Progressing",
        ),
        (
            {"replicas": 1},
            {
                "observedGeneration": 1,
                "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            },
            1,
            "Degraded",
        ),
        ({"replicas": 0}, {"observedGeneration": 1}, 1, "Healthy"),
    ],
)
def test_deployment_health(
    spec: dict[str, Any], state: dict[str, Any], generation: int, expected: str
) -> None:
    assert status(deployment_health(workload("Deployment", spec, state, generation))) == expected


def test_deployment_health_messages() -> None:
    never = deployment_health(workload("Deployment", {"replicas": 1}, {}))
    assert never == (
        "Progressing",
        "Waiting for rollout to finish: observed deployment generation less than desired generation",
    )
    stuck = {
        "observedGeneration": 1,
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
    }
    assert deployment_health(workload("Deployment", {"replicas": 1}, stuck)) == (
        "Degraded",
        'Deployment "w" exceeded its progress deadline',
    )


@pytest.mark.parametrize(
    ("spec", "state", "expected"),
    [
        ({"replicas": 1}, {}, "Progressing"),  # observedGeneration 0
        ({"replicas": 2}, {"observedGeneration": 1, "readyReplicas": 1}, "Progressing"),
        (
            {"replicas": 1, "updateStrategy": {"type": "RollingUpdate"}},
            {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"},
            "Progressing",
        ),
        (
            {"replicas": 1, "updateStrategy": {"type": "RollingUpdate"}},
            {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "a"},
            "Healthy",
        ),
        (  # what the API server defaults: the partition rule decides
            {"replicas": 2, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
            {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1},
            "Progressing",
        ),
        (
            {"replicas": 2, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
            {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "updateRevision": "b"},
            "Healthy",
        ),
        (
            {"replicas": 1, "updateStrategy": {"type": "OnDelete"}},
            {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"},
            "Healthy",
        ),
    ],
)
def test_statefulset_health(spec: dict[str, Any], state: dict[str, Any], expected: str) -> None:
    assert status(statefulset_health(workload("StatefulSet", spec, state))) == expected


def job(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": spec,
        "status": status,
    }


def test_job_health() -> None:
    assert job_health(job({})) == ("Progressing", "")
    assert job_health(job({"active": 1})) == ("Progressing", "")
    assert job_health(job({"conditions": [{"type": "Complete", "status": "True"}]})) == ("Healthy", "")
    failed = {
        "conditions": [
            {"type": "Failed", "status": "True", "message": "Job has reached the specified backoff limit"}
        ]
    }
    assert job_health(job(failed)) == ("Degraded", "Job has reached the specified backoff limit")
    assert status(job_health(job({}, suspend=True))) == "Suspended"


def pod(phase: str, extra: dict[str, Any] | None = None, restart: str = "Always") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"restartPolicy": restart},
        "status": {"phase": phase, **(extra or {})},
    }


def test_pod_health() -> None:
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert pod_health(pod("Running", ready)) == ("Healthy", "")
    assert status(pod_health(pod("Running"))) == "Progressing"
    # waiting in an init container (wait-for-migrations) is Pending, not an error
    assert status(pod_health(pod("Pending"))) == "Progressing"
    pulling = {
        "containerStatuses": [{"state": {"waiting": {"reason": "ErrImageNeverPull", "message": "no image"}}}]
    }
    assert pod_health(pod("Pending", pulling)) == ("Degraded", "no image")
    assert status(pod_health(pod("Pending", pulling, "Never"))) == "Progressing"  # a hook pod
    crashed = {"containerStatuses": [{"lastState": {"terminated": {"exitCode": 1}}}]}
    assert status(pod_health(pod("Running", crashed))) == "Degraded"
    assert status(pod_health(pod("Running", ready, "OnFailure"))) == "Progressing"
    assert status(pod_health(pod("Succeeded"))) == "Healthy"
    assert pod_health(pod("Failed", {"message": "evicted"})) == ("Degraded", "evicted")
    assert status(pod_health(pod("Weird"))) == "Unknown"


def test_other_kinds() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"type": "ClusterIP"},
    }
    assert service_health(service) == ("Healthy", "")
    balancer = {**service, "spec": {"type": "LoadBalancer"}}
    assert service_health(balancer) == ("Progressing", "")
    assert service_health({**balancer, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}) == (
        "Healthy",
        "",
    )
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}}
    assert pvc_health({**claim, "status": {"phase": "Pending"}}) == ("Progressing", "")
    assert pvc_health({**claim, "status": {"phase": "Bound"}}) == ("Healthy", "")
    assert health(obj()) is None  # ConfigMaps, Secrets, RBAC: no health check, done once applied
    assert health(obj("Role", "rbac.authorization.k8s.io/v1")) is None
    assert health({**job({}), "metadata": {"name": "j", "deletionTimestamp": "2025-01-01T00:00:00Z"}}) == (
        "Progressing",
        "Pending deletion",
    )
    assert health(job({"conditions": [{"type": "Complete"}]})) == ("Healthy", "")


# --- the sync loop against an in-memory API ------------------------------------------------------------


def key(o: dict[str, Any]) -> Key:
    return Task(o, "Sync", False).identity


class FakeKube:
    """Enough of an API server for the sync loop: kubectl apply/get/replace/delete on stored objects.
    `controller` plays the cluster's controllers: it may write status into the stored objects."""

    def __init__(self, controller: Callable[[dict[Key, dict[str, Any]]], None], reject: str = "") -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.controller, self.reject = controller, reject  # `reject`: a name the API server refuses
        self.verbs: list[str] = []

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        verb, docs = args[0], [d for d in yaml.load_all(input or "", Loader=yaml.CSafeLoader) if d]
        self.verbs.append(verb)
        stdout = ""
        if verb == "apply" and any(d["metadata"]["name"] == self.reject for d in docs):
            return subprocess.CompletedProcess(list(args), 1, "", f'"{self.reject}" is invalid')
        if verb == "apply":
            for doc in docs:
                old = self.objects.get(key(doc))
                new = copy.deepcopy(doc)
                new["metadata"]["generation"] = (old["metadata"]["generation"] + 1) if old else 1
                new["status"] = old.get("status", {}) if old else {}
                self.objects[key(doc)] = new
        elif verb == "get":
            self.controller(self.objects)
            found = [copy.deepcopy(self.objects[key(d)]) for d in docs if key(d) in self.objects]
            stdout = json.dumps({"kind": "List", "items": found}) if found else ""
        elif verb == "replace":
            for doc in docs:
                self.objects[key(doc)] = copy.deepcopy(doc)
                if doc["metadata"].get("deletionTimestamp") and not doc["metadata"].get("finalizers"):
                    del self.objects[key(doc)]
        elif verb == "delete":
            for doc in docs:
                live = self.objects.get(key(doc))
                if live and live["metadata"].get("finalizers"):  # the API server waits for finalizers
                    live["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
                elif live:
                    del self.objects[key(doc)]
        return subprocess.CompletedProcess(list(args), 0, stdout, "")


def controllers(
    ready: bool, job_result: dict[str, str] | None = None
) -> Callable[[dict[Key, dict[str, Any]]], None]:
    """Workloads become ready only if `ready` (the deadlock: their pods wait for the migration); Jobs end
    with the condition named in `job_result` (default Complete)."""

    def run(objects: dict[Key, dict[str, Any]]) -> None:
        for o in objects.values():
            gen, replicas = o["metadata"]["generation"], o["spec"].get("replicas", 1) if "spec" in o else 1
            if o["kind"] in ("Deployment", "StatefulSet") and ready:
                o["status"] = {
                    "observedGeneration": gen,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "currentRevision": "r1",
                    "updateRevision": "r1",
                }
            elif o["kind"] == "Job" and not o["status"]:
                condition = (job_result or {}).get(o["metadata"]["name"], "Complete")
                o["status"] = {"conditions": [{"type": condition, "status": "True", "message": condition}]}

    return run


def test_deadlock_the_postsync_migration_is_never_created() -> None:
    kube = FakeKube(controllers(ready=False))
    result = ArgoSync(kube, "airflow", APACHE).sync(timeout=1.5, poll=0.01)
    print(result)
    assert result.phase == "Running"
    assert (
        result.message
        == "waiting for healthy state of apps/Deployment/airflow-api-server and 7 more resources"
    )
    assert result.hooks_created == [
        "/Secret/airflow-broker-url",
        "/Secret/airflow-fernet-key",
        "/Secret/airflow-redis-password",
    ]
    assert ("batch", "Job", "airflow", "airflow-run-airflow-migrations") not in kube.objects
    assert result.health["apps/Deployment/airflow-scheduler"] == "Progressing"
    assert result.health["/Service/airflow-api-server"] == "Healthy"
    # PreSync hooks completed and lost Argo CD's finalizer by an UPDATE
    fernet = kube.objects[("", "Secret", "airflow", "airflow-fernet-key")]
    assert HOOK_FINALIZER not in fernet["metadata"]["finalizers"]


def test_healthy_workloads_let_the_postsync_hooks_run_in_weight_order() -> None:
    kube = FakeKube(controllers(ready=True))
    result = ArgoSync(kube, "airflow", APACHE).sync(timeout=10, poll=0.01)
    print(result)
    assert (result.phase, result.message) == ("Succeeded", "successfully synced (no more tasks)")
    migrate, user = "batch/Job/airflow-run-airflow-migrations", "batch/Job/airflow-create-user"
    assert result.hooks_created[-2:] == [migrate, user]
    events = [event for _, event in result.timeline]
    assert events.index(f"hook completed {migrate}: Succeeded (Complete)") < events.index(
        f"hook created {user} (PostSync)"
    )
    assert f"message: waiting for completion of hook {migrate} and 1 more hooks" in events
    # hook-succeeded: the Jobs are deleted when the sync succeeds; PreSync Secrets (before-hook-creation) stay
    assert not [k for k in kube.objects if k[1] == "Job"]
    assert ("", "Secret", "airflow", "airflow-fernet-key") in kube.objects
    # the next sync deletes the existing PreSync hooks before creating them again
    again = ArgoSync(kube, "airflow", APACHE).sync(timeout=10, poll=0.01)
    assert again.phase == "Succeeded"
    assert any(
        event == "hook deleted /Secret/airflow-fernet-key (BeforeHookCreation)" for _, event in again.timeline
    )


def test_a_failed_migration_fails_the_sync_and_stops_the_later_hooks() -> None:
    kube = FakeKube(controllers(ready=True, job_result={"airflow-run-airflow-migrations": "Failed"}))
    result = ArgoSync(kube, "airflow", APACHE).sync(timeout=10, poll=0.01)
    print(result)
    assert (result.phase, result.message) == (
        "Failed",
        "one or more synchronization tasks completed unsuccessfully",
    )
    assert "batch/Job/airflow-create-user" not in result.hooks_created
    # hook-succeeded only: the failed Job is kept for inspection
    assert ("batch", "Job", "airflow", "airflow-run-airflow-migrations") in kube.objects


def test_a_degraded_workload_fails_the_sync() -> None:
    healthy = controllers(ready=True)

    def deadline(objects: dict[Key, dict[str, Any]]) -> None:
        healthy(objects)  # while any task of the wave is still progressing, Argo CD keeps waiting
        for o in objects.values():
            if o["kind"] == "Deployment":
                condition = {"type": "Progressing", "reason": "ProgressDeadlineExceeded"}
                o["status"] = {"observedGeneration": 1, "conditions": [condition]}

    result = ArgoSync(FakeKube(deadline), "airflow", APACHE).sync(timeout=10, poll=0.01)
    assert (result.phase, result.message) == (
        "Failed",
        "one or more synchronization tasks completed unsuccessfully",
    )
    assert result.health["apps/Deployment/airflow-scheduler"] == "Degraded"


def test_an_object_the_api_server_refuses_fails_the_sync() -> None:
    kube = FakeKube(controllers(ready=True), reject="airflow-scheduler")
    result = ArgoSync(kube, "airflow", APACHE).sync(timeout=10, poll=0.01)
    assert (result.phase, result.message) == ("Failed", "one or more objects failed to apply")
    events = [event for _, event in result.timeline]
    assert '/ServiceAccount/airflow-scheduler: "airflow-scheduler" is invalid' in " ".join(events)
    assert ("apps", "Deployment", "airflow", "airflow-api-server") in kube.objects  # the rest of the wave
    assert not [k for k in kube.objects if k[1] == "Job"]


def test_the_timeline_renders() -> None:
    result = ArgoSync(FakeKube(controllers(ready=True)), "airflow", BITNAMI).sync(timeout=10, poll=0.01)
    text = str(result)
    assert "hook created batch/Job/airflow-setup-db (PostSync)" in text
    assert text.splitlines()[-1] == "phase Succeeded: successfully synced (no more tasks)"


# --- a real API server (no controllers: nothing ever becomes Ready) ----------------------------------

TINY = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: pre
  annotations: {helm.sh/hook: pre-install, helm.sh/hook-delete-policy: before-hook-creation}
data: {step: pre}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: localhost/none:1, imagePullPolicy: Never}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: post
  annotations: {helm.sh/hook: "post-install,post-upgrade"}
data: {step: post}
"""


@pytest.mark.e2e
def test_sync_waits_for_the_deployment_and_never_creates_the_postsync_hook(cluster: Cluster) -> None:
    namespace = "argocd-sync"
    cluster.kubectl("create", "namespace", namespace)
    result = ArgoSync(cluster.kubectl, namespace, TINY).sync(timeout=5)
    print(result)
    assert result.phase == "Running"
    assert result.message == "waiting for healthy state of apps/Deployment/web"
    assert result.hooks_created == ["/ConfigMap/pre"]
    missing = cluster.kubectl("get", "configmap", "post", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    shown = cluster.kubectl("get", "deployment/web", "-n", namespace, "-o", "json", "--show-managed-fields")
    web = json.loads(shown.stdout)
    assert "argocd-controller" in {m["manager"] for m in web["metadata"]["managedFields"]}
    assert web["metadata"]["annotations"][TRACKING_ID] == f"airflow:apps/Deployment:{namespace}/web"
    pre = json.loads(cluster.kubectl("get", "configmap", "pre", "-n", namespace, "-o", "json").stdout)
    assert HOOK_FINALIZER not in (pre["metadata"].get("finalizers") or [])
    events = [event for _, event in result.timeline]
    assert "hook finalizer removed /ConfigMap/pre" in events


@pytest.mark.e2e
def test_prune_deletes_only_what_this_app_tracked_and_no_longer_renders(cluster: Cluster) -> None:
    namespace = "argocd-prune"
    cluster.kubectl("create", "namespace", namespace)

    def configmaps(*names: str) -> str:
        return "".join(f"---\n{yaml.safe_dump(obj('ConfigMap', 'v1', name))}" for name in names)

    assert ArgoSync(cluster.kubectl, namespace, configmaps("kept", "dropped")).sync(timeout=30).phase == (
        "Succeeded"
    )
    assert ArgoSync(cluster.kubectl, namespace, configmaps("theirs"), app="other").sync(timeout=30).phase == (
        "Succeeded"
    )
    cluster.kubectl("create", "configmap", "by-hand", "-n", namespace)

    def names() -> set[str]:
        listed = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "json")
        found = {item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]}
        return found - {"kube-root-ca.crt"}

    without = ArgoSync(cluster.kubectl, namespace, configmaps("kept")).sync(timeout=30)
    assert without.phase == "Succeeded" and names() == {"kept", "dropped", "theirs", "by-hand"}, without
    pruned = ArgoSync(cluster.kubectl, namespace, configmaps("kept"), prune=True).sync(timeout=30)
    print(pruned)
    assert pruned.phase == "Succeeded", pruned
    assert "deleted /ConfigMap/dropped (pruned)" in [event for _, event in pruned.timeline]
    # deleted in the foreground, as Argo CD prunes by default: this tier runs no garbage collector
    # (no controller-manager), so the object stays, marked for deletion, with the GC's finalizer
    dropped = json.loads(cluster.kubectl("get", "configmap", "dropped", "-n", namespace, "-o", "json").stdout)
    assert dropped["metadata"].get("deletionTimestamp"), dropped["metadata"]
    assert dropped["metadata"]["finalizers"] == ["foregroundDeletion"]
    for name in ("kept", "theirs", "by-hand"):
        live = json.loads(cluster.kubectl("get", "configmap", name, "-n", namespace, "-o", "json").stdout)
        assert not live["metadata"].get("deletionTimestamp"), live["metadata"]
