"""An Argo CD sync, driven by the tests: Argo CD cannot be installed here, and the deadlock this project
removes exists only under Argo CD's ordering. This module replays that ordering against a real API server
with kubectl, following Argo CD's documentation and its sync engine (gitops-engine) closely enough that
the operation messages read like Argo CD's.

What it follows, and where from:
- Helm hooks become Argo CD hooks: pre-install/pre-upgrade -> PreSync, post-install/post-upgrade ->
  PostSync, both on every sync (Argo CD cannot tell install from upgrade); other Helm hook values (test,
  rollback, delete, "") leave the object out; `crd-install` is an ordinary resource; an
  `argocd.argoproj.io/hook` annotation wins over every Helm one. `helm.sh/hook-weight` is the wave unless
  `argocd.argoproj.io/sync-wave` says otherwise. Delete policies map before-hook-creation ->
  BeforeHookCreation, hook-succeeded -> HookSucceeded, hook-failed -> HookFailed; no policy means
  BeforeHookCreation.
  https://argo-cd.readthedocs.io/en/stable/user-guide/helm/#helm-hooks
  https://argo-cd.readthedocs.io/en/stable/user-guide/resource_hooks/
  gitops-engine pkg/sync/hook/hook.go, hook/helm/type.go, hook/helm/delete_policy.go, hook/delete_policy.go,
  syncwaves/waves.go, sync_phase.go (https://github.com/argoproj/gitops-engine/tree/master/pkg/sync)
- Order: phase (PreSync, Sync, PostSync), wave, kind (Helm's install order: kindOrder in sync_tasks.go),
  name. One wave is applied per step; the next starts only when every task of the earlier ones is
  finished: resources Healthy (or without a health check), hooks completed. A Degraded resource or a
  failed hook fails the sync. SyncFail hooks are not run here.
  https://argo-cd.readthedocs.io/en/stable/user-guide/sync-waves/
  gitops-engine pkg/sync/sync_tasks.go, sync_task.go, sync_context.go (Sync, runTasks, setRunningPhase)
- Health, as gitops-engine judges it (Deployment, StatefulSet, Job, Pod, Service, PVC; anything else has
  none and counts as done once applied).
  https://argo-cd.readthedocs.io/en/stable/operator-manual/health/
  gitops-engine pkg/health/health.go, health_deployment.go, health_statefulset.go, health_job.go,
  health_pod.go, health_service.go, health_pvc.go
- Writes: server-side apply as `argocd-controller` (sync option ServerSideApply=true,
  common.ArgoCDSSAManager); hooks go through the same apply (the Helm page: "hooks are created by using
  kubectl apply"), carry the finalizer `argocd.argoproj.io/hook-finalizer` from creation, and lose it by a
  full UPDATE once complete; every object carries the annotation tracking id
  `<app>:<group>/<kind>:<namespace>/<name>`. A hook with BeforeHookCreation that exists is deleted
  (foreground) before it is applied again; HookSucceeded/HookFailed hooks are deleted when the sync ends.
  https://argo-cd.readthedocs.io/en/stable/user-guide/sync-options/#server-side-apply
- Messages, verbatim from setRunningPhase and Sync in sync_context.go:
  `waiting for healthy state of <group>/<kind>/<name>[ and N more resources]`,
  `waiting for completion of hook <group>/<kind>/<name>[ and N more hooks]`, `waiting for deletion of ...`,
  `one or more tasks are running`, `successfully synced (all tasks run)`,
  `successfully synced (no more tasks)`, `one or more synchronization tasks completed unsuccessfully`,
  `one or more objects failed to apply`. The core group is empty, so a ConfigMap reads `/ConfigMap/name`.

- Pruning (`prune=True`: `argocd app sync --prune`, or an automated policy with `prune: true`): a live object
  of the namespace that carries this app's tracking id and is no longer rendered is deleted (foreground, the
  default PrunePropagationPolicy) in the Sync phase, in the wave its live annotations give, and counts as
  done once deleted ("pruned"). Only the namespaced kinds in PRUNABLE are looked at.
  https://argo-cd.readthedocs.io/en/stable/user-guide/auto_sync/#automatic-pruning
  https://argo-cd.readthedocs.io/en/stable/user-guide/sync-options/#prune-propagation-policy

Left out: the client-side dry run before the first step, namespace auto-creation and the namespace/CRD
dependency re-ordering (Airflow charts need none of them)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Health = tuple[str, str] | None  # (Healthy|Progressing|Degraded|Suspended|Unknown, message); None: no check

MANAGER = "argocd-controller"
HOOK_FINALIZER = "argocd.argoproj.io/hook-finalizer"
TRACKING_ID = "argocd.argoproj.io/tracking-id"
PHASE_ORDER = {"PreSync": -1, "Sync": 0, "PostSync": 1}
ARGO_HOOK_TYPES = {"PreSync", "Sync", "PostSync", "SyncFail", "Skip", "PreDelete", "PostDelete"}
HELM_HOOK_TYPES = {
    "pre-install": "PreSync",
    "pre-upgrade": "PreSync",
    "post-install": "PostSync",
    "post-upgrade": "PostSync",
}
HELM_DELETE_POLICIES = {
    "before-hook-creation": "BeforeHookCreation",
    "hook-succeeded": "HookSucceeded",
    "hook-failed": "HookFailed",
}
# sync_tasks.go kindOrder (Helm's install order); unlisted kinds (0) sort after all of these
KIND_LIST = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget",
    "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "Ingress", "APIService",
]  # fmt: skip
KIND_ORDER = {kind: i - len(KIND_LIST) for i, kind in enumerate(KIND_LIST)}
CLUSTER_SCOPED = {  # kinds that never get the sync's namespace
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "PersistentVolume", "PriorityClass", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "IngressClass",
    "RuntimeClass", "CSIDriver", "PodSecurityPolicy",
}  # fmt: skip
# where prune looks for live objects of the app (every namespaced kind the Airflow charts render)
PRUNABLE = (
    "deployments.apps,statefulsets.apps,jobs.batch,cronjobs.batch,services,configmaps,secrets,"
    "serviceaccounts,persistentvolumeclaims,roles.rbac.authorization.k8s.io,"
    "rolebindings.rbac.authorization.k8s.io,poddisruptionbudgets.policy,networkpolicies.networking.k8s.io,"
    "ingresses.networking.k8s.io"
)


# --- what Argo CD reads from the rendered manifest ------------------------------------------------------


def _csv(obj: dict[str, Any], key: str) -> list[str]:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return [] if text is None else [part.strip() for part in str(text).split(",") if part.strip()]


def _has(obj: dict[str, Any], key: str) -> bool:
    return key in ((obj.get("metadata") or {}).get("annotations") or {})


def hook_types(obj: dict[str, Any]) -> list[str]:
    """Argo CD hook types; Helm's are read only when no Argo CD one is valid (hook.go Types)."""
    types = [t for t in _csv(obj, "argocd.argoproj.io/hook") if t in ARGO_HOOK_TYPES]
    return types or [HELM_HOOK_TYPES[t] for t in _csv(obj, "helm.sh/hook") if t in HELM_HOOK_TYPES]


def is_hook(obj: dict[str, Any]) -> bool:
    """hook.go IsHook: an Argo CD hook annotation (not Skip alone), else any helm.sh/hook but crd-install."""
    if _has(obj, "argocd.argoproj.io/hook"):
        return hook_types(obj) != ["Skip"]
    return _has(obj, "helm.sh/hook") and _csv(obj, "helm.sh/hook") != ["crd-install"]


def sync_phases(obj: dict[str, Any]) -> list[str]:
    """sync_phase.go: [] drops the object (Skip, or a hook Argo CD has no phase for, e.g. Helm `test`)."""
    if hook_types(obj) == ["Skip"]:
        return []
    if is_hook(obj):
        return sorted({t for t in hook_types(obj) if t in PHASE_ORDER}, key=PHASE_ORDER.__getitem__)
    return ["Sync"]


def wave(obj: dict[str, Any]) -> int:
    """syncwaves.Wave: argocd.argoproj.io/sync-wave, else helm.sh/hook-weight, else 0."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    for key in ("argocd.argoproj.io/sync-wave", "helm.sh/hook-weight"):
        try:
            return int(str(annotations[key]).strip())
        except (KeyError, ValueError):
            continue
    return 0


def delete_policies(obj: dict[str, Any]) -> list[str]:
    """hook/delete_policy.go: Argo CD's and Helm's together; none given means BeforeHookCreation."""
    argo = {"BeforeHookCreation", "HookSucceeded", "HookFailed"}
    policies = [p for p in _csv(obj, "argocd.argoproj.io/hook-delete-policy") if p in argo]
    policies += [
        HELM_DELETE_POLICIES[p] for p in _csv(obj, "helm.sh/hook-delete-policy") if p in HELM_DELETE_POLICIES
    ]
    return policies or ["BeforeHookCreation"]


# --- health, as gitops-engine judges it -------------------------------------------------------------


def health(obj: dict[str, Any]) -> Health:
    """health.go GetResourceHealth: the built-in checks by group and kind; None when there is none."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Progressing", "Pending deletion"
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    check = {
        ("apps", "Deployment"): deployment_health,
        ("apps", "StatefulSet"): statefulset_health,
        ("batch", "Job"): job_health,
        ("", "Pod"): pod_health,
        ("", "Service"): service_health,
        ("", "PersistentVolumeClaim"): pvc_health,
    }.get((group, str(obj.get("kind"))))
    return check(obj) if check else None


def deployment_health(obj: dict[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("paused"):
        return "Suspended", "Deployment is paused"
    if (obj.get("metadata") or {}).get("generation", 0) > status.get("observedGeneration", 0):
        return (
            "Progressing",
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        )
    replicas, updated = spec.get("replicas"), status.get("updatedReplicas", 0)
    available, current = status.get("availableReplicas", 0), status.get("replicas", 0)
    progressing = [c for c in status.get("conditions") or [] if c.get("type") == "Progressing"]
    if progressing and progressing[0].get("reason") == "ProgressDeadlineExceeded":
        return "Degraded", f'Deployment "{obj["metadata"]["name"]}" exceeded its progress deadline'
    if replicas is not None and updated < replicas:
        return (
            "Progressing",
            f"Waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated...",
        )
    if current > updated:
        return (
            "Progressing",
            f"Waiting for rollout to finish: {current - updated} old replicas are pending termination...",
        )
    if available < updated:
        return (
            "Progressing",
            f"Waiting for rollout to finish: {available} of {updated} updated replicas are available...",
        )
    return "Healthy", ""


def statefulset_health(obj: dict[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    observed = status.get("observedGeneration", 0)
    if observed == 0 or (obj.get("metadata") or {}).get("generation", 0) > observed:
        return "Progressing", "Waiting for statefulset spec update to be observed..."
    replicas, ready, updated = (
        spec.get("replicas"),
        status.get("readyReplicas", 0),
        status.get("updatedReplicas", 0),
    )
    if replicas is not None and ready < replicas:
        return "Progressing", f"Waiting for {replicas - ready} pods to be ready..."
    strategy = spec.get("updateStrategy") or {}
    # The API server defaults RollingUpdate with `rollingUpdate: {partition: 0}`, so on a real cluster this
    # branch decides, not the revision comparison below.
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and strategy.get("rollingUpdate") is not None:
        partition = strategy["rollingUpdate"].get("partition")
        if replicas is not None and partition is not None and updated < replicas - partition:
            return "Progressing", (
                f"Waiting for partitioned roll out to finish: {updated} out of {replicas - partition} "
                "new pods have been updated..."
            )
        return "Healthy", f"partitioned roll out complete: {updated} new pods have been updated..."
    if strategy.get("type") == "OnDelete":
        return "Healthy", f"statefulset has {ready} ready pods"
    if status.get("updateRevision") != status.get("currentRevision"):
        return "Progressing", (
            f"waiting for statefulset rolling update to complete {updated} pods at revision "
            f"{status.get('updateRevision')}..."
        )
    return "Healthy", (
        f"statefulset rolling update complete {status.get('currentReplicas', 0)} pods at revision "
        f"{status.get('currentRevision')}..."
    )


def job_health(obj: dict[str, Any]) -> Health:
    if (obj.get("spec") or {}).get("suspend"):  # documented on the health page; the wording is ours
        return "Suspended", "Job is suspended"
    failed = complete = None
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed":
            failed = condition.get("message", "")
        elif condition.get("type") == "Complete":
            complete = condition.get("message", "")
    if failed is not None:
        return "Degraded", failed
    return ("Healthy", complete) if complete is not None else ("Progressing", "")


def pod_health(obj: dict[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    message, always = status.get("message", ""), spec.get("restartPolicy", "Always") == "Always"
    if always:  # a waiting container in an error state degrades a long-running pod (not a hook pod)
        reasons = [(c.get("state") or {}).get("waiting") or {} for c in status.get("containerStatuses") or []]
        bad = [
            w
            for w in reasons
            if w
            and (w.get("reason", "").startswith("Err") or w.get("reason", "").endswith(("Error", "BackOff")))
        ]
        if bad:
            return "Degraded", ", ".join(w.get("message", "") for w in bad)
    phase = status.get("phase")
    if phase == "Pending":
        return "Progressing", message
    if phase == "Succeeded":
        return "Healthy", message
    if phase == "Failed":
        return "Degraded", message
    if phase == "Running":
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if always and ready:
            return "Healthy", message
        restarted = any(
            c.get("lastState", {}).get("terminated") for c in status.get("containerStatuses") or []
        )
        return ("Degraded" if always and restarted else "Progressing"), message
    return "Unknown", message


def service_health(obj: dict[str, Any]) -> Health:
    if (obj.get("spec") or {}).get("type") == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        return ("Healthy" if ingress else "Progressing"), ""
    return "Healthy", ""


def pvc_health(obj: dict[str, Any]) -> Health:
    phase = (obj.get("status") or {}).get("phase")
    return {"Bound": "Healthy", "Pending": "Progressing", "Lost": "Degraded"}.get(str(phase), "Unknown"), ""


# --- the sync ----------------------------------------------------------------------------------------


@dataclass
class Task:
    """One object in one phase (sync_task.go). state: "" pending, Running, Succeeded, Failed."""

    obj: dict[str, Any]
    phase: str
    hook: bool
    state: str = ""
    message: str = ""
    live: dict[str, Any] | None = None
    health: Health = None
    prune: bool = False  # a live object no longer rendered: deleted, never applied

    @property
    def wave(self) -> int:
        return wave(self.obj)

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def ref(self) -> str:
        """`group/kind/name`, as Argo CD's operation messages print it."""
        return f"{str(self.obj['apiVersion']).rpartition('/')[0]}/{self.kind}/{self.name}"

    @property
    def identity(self) -> tuple[str, str, str, str]:
        meta = self.obj["metadata"]
        return str(self.obj["apiVersion"]).rpartition("/")[0], self.kind, meta.get("namespace", ""), self.name

    def policy(self, name: str) -> bool:
        return self.hook and name in delete_policies(self.obj)


def plan(manifest: str, namespace: str, app: str | None = "airflow") -> list[Task]:
    """The ordered task list of one sync (getSyncTasks + syncTasks.Less), SyncFail hooks left out."""
    tasks = []
    for doc in yaml.load_all(manifest, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        for phase in sync_phases(doc):
            obj = json.loads(json.dumps(doc, default=str))
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):  # hooks with generateName
                meta["name"] = f"{meta['generateName']}-{phase}-{int(time.time())}".lower()
            if obj["kind"] not in CLUSTER_SCOPED:
                meta.setdefault("namespace", namespace)
            if app:
                group = str(obj["apiVersion"]).rpartition("/")[0]
                tracking = f"{app}:{group}/{obj['kind']}:{meta.get('namespace', '')}/{meta['name']}"
                meta["annotations"] = {**(meta.get("annotations") or {}), TRACKING_ID: tracking}
            if is_hook(doc):
                meta["finalizers"] = [*(meta.get("finalizers") or []), HOOK_FINALIZER]
            tasks.append(Task(obj, phase, is_hook(doc)))
    tasks.sort(key=lambda t: (PHASE_ORDER[t.phase], t.wave, KIND_ORDER.get(t.kind, 0), t.name))
    return tasks


@dataclass
class SyncResult:
    phase: str  # Succeeded, Failed, or Running when the timeout hit first
    message: str
    timeline: list[tuple[float, str]]
    hooks_created: list[str]
    health: dict[str, str] = field(default_factory=dict)  # ref -> last health status seen

    def __str__(self) -> str:
        lines = [f"{seconds:7.1f}s  {event}" for seconds, event in self.timeline]
        return "\n".join([*lines, f"phase {self.phase}: {self.message}"])

    def print_timeline(self) -> None:
        print(self)


class ArgoSync:
    """Runs one sync operation of `manifest` (helm template output) into `namespace`."""

    def __init__(
        self,
        kubectl: Kubectl,
        namespace: str,
        manifest: str,
        app: str | None = "airflow",
        prune: bool = False,
    ) -> None:
        self.kubectl, self.namespace, self.app, self.prune = kubectl, namespace, app, prune
        self.tasks = plan(manifest, namespace, app)
        self.phase, self.message = "Running", ""
        self.timeline: list[tuple[float, str]] = []
        self.hooks_created: list[str] = []
        self._start = time.monotonic()

    def sync(self, timeout: float, poll: float = 1.0) -> SyncResult:
        self._start = time.monotonic()
        if self.prune and self.app:
            self.tasks = sorted(
                [*self.tasks, *self._prune_tasks()],
                key=lambda t: (PHASE_ORDER[t.phase], t.wave, KIND_ORDER.get(t.kind, 0), t.name),
            )
        self._event(f"sync started: {len(self.tasks)} tasks")
        while True:
            self._step()
            if self.phase != "Running" or time.monotonic() - self._start > timeout:
                break
            time.sleep(poll)
        if self.phase == "Running":
            self._event(f"timeout after {timeout:g}s, still Running: {self.message}")
        known = {t.ref: t.health[0] for t in self.tasks if t.health}
        return SyncResult(self.phase, self.message, list(self.timeline), list(self.hooks_created), known)

    # one reconciliation, as sync_context.go Sync() does it
    def _step(self) -> None:
        self._refresh()
        multi_step = len({(t.phase, t.wave) for t in self.tasks}) > 1
        running = [t for t in self.tasks if (multi_step or t.hook) and t.state == "Running"]
        if running:
            self._running(running)
            return
        for task in self.tasks:
            if task.hook and task.state in ("Succeeded", "Failed") and task.live:
                self._remove_finalizer(task)
        done_hooks = [t for t in self.tasks if t.hook and t.live and t.state != "Running"]
        if any(t.state == "Failed" for t in self.tasks):
            self._delete_hooks([t for t in done_hooks if t.policy("HookFailed")], "HookFailed")
            self._finish("Failed", "one or more synchronization tasks completed unsuccessfully")
            return
        pending = [t for t in self.tasks if t.state == ""]
        if not pending:
            self._delete_hooks([t for t in done_hooks if t.policy("HookSucceeded")], "HookSucceeded")
            self._finish("Succeeded", "successfully synced (no more tasks)")
            return
        step = (pending[0].phase, pending[0].wave)
        remaining = [t for t in pending if (t.phase, t.wave) != step or t.hook]
        current = [t for t in pending if (t.phase, t.wave) == step]
        self._set_message("one or more tasks are running")
        outcome = self._run(current, f"{step[0]} wave {step[1]}")
        if outcome == "failed":
            self._delete_hooks([t for t in done_hooks if t.policy("HookFailed")], "HookFailed")
            self._finish("Failed", "one or more objects failed to apply")
        elif outcome == "successful" and not remaining:
            self._delete_hooks([t for t in done_hooks if t.policy("HookSucceeded")], "HookSucceeded")
            self._finish("Succeeded", "successfully synced (all tasks run)")
        elif outcome == "successful":
            self._running(remaining)
        else:  # hooks are being deleted before their re-creation
            deleting = [
                t for t in current if t.live and (t.policy("HookSucceeded") or t.policy("HookFailed"))
            ]
            self._running(deleting, "deletion of")

    def _prune_tasks(self) -> list[Task]:
        """Live objects tracked as this app's that the render no longer has (getSyncTasks' prune tasks)."""
        listed = self.kubectl("get", PRUNABLE, "-n", self.namespace, "-o", "json")
        rendered = {t.identity for t in self.tasks}
        tasks = []
        for live in json.loads(listed.stdout)["items"]:
            tracking = (live["metadata"].get("annotations") or {}).get(TRACKING_ID, "")
            task = Task(live, "Sync", hook=False, prune=True)
            if tracking.startswith(f"{self.app}:") and task.identity not in rendered:
                tasks.append(task)
        return tasks

    def _run(self, tasks: list[Task], label: str) -> str:
        """runTasks: delete hooks due for re-creation first (and come back later), prune, then apply."""
        for task in [t for t in tasks if t.prune]:
            self._delete(task, "pruned")
            task.state, task.message = "Succeeded", "pruned"
        tasks = [t for t in tasks if not t.prune]
        if not tasks:
            return "successful"
        stale = [t for t in tasks if t.live and t.policy("BeforeHookCreation")]
        for task in stale:
            self._remove_finalizer(task)  # left by an earlier sync that never finished
            if task.live and not task.live["metadata"].get("deletionTimestamp"):
                self._delete(task, "BeforeHookCreation")
        if stale:
            return "pending"
        self._event(f"applying {label}: " + ", ".join(t.ref + (" (hook)" if t.hook else "") for t in tasks))
        outcome, together = "successful", self._apply(tasks)  # one call; one by one only to name a failure
        for task in tasks:
            result = together if together.returncode == 0 else self._apply([task])
            if result.returncode != 0:
                task.state, task.message, outcome = "Failed", result.stderr.strip(), "failed"
                self._event(f"apply failed {task.ref}: {task.message}")
                continue
            lines = [line for line in result.stdout.splitlines() if f"/{task.name} " in line]
            task.state, task.message = "Running", lines[0] if lines else ""
            if task.hook:
                self.hooks_created.append(task.ref)
                self._event(f"hook created {task.ref} ({task.phase})")
        return outcome

    def _apply(self, tasks: list[Task]) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            "apply", "--server-side", f"--field-manager={MANAGER}", "--force-conflicts", "-f", "-",
            input="".join("---\n" + json.dumps(t.obj) + "\n" for t in tasks), check=False,
        )  # fmt: skip

    def _refresh(self) -> None:
        """Reads every object once and updates running tasks from its health (the first loop of Sync)."""
        lives = self._get([t.obj for t in self.tasks])
        for task in self.tasks:
            group, kind, _, name = task.identity  # cluster-scoped objects come back without a namespace
            task.live = lives.get(task.identity) or lives.get((group, kind, "", name))
            if task.live is None:
                continue
            now = health(task.live)
            if now != task.health and task.state:
                self._event(
                    f"{task.ref}: {now[0] if now else 'no health check'}"
                    + (f" ({now[1]})" if now and now[1] else "")
                )
            task.health = now
            if task.state != "Running":
                continue
            if task.hook:  # getOperationPhase
                status = now[0] if now else "Healthy"
                state = {"Healthy": "Succeeded", "Degraded": "Failed", "Unknown": "Failed"}.get(
                    status, "Running"
                )
                if state != "Running":
                    task.state, task.message = state, now[1] if now else f"{task.name} created"
                    self._event(
                        f"hook completed {task.ref}: {state}" + (f" ({task.message})" if task.message else "")
                    )
            elif now is None or now[0] == "Healthy":
                task.state = "Succeeded"
            elif now[0] == "Degraded":
                task.state, task.message = "Failed", now[1]

    def _get(self, objs: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        text = "".join("---\n" + json.dumps(o) + "\n" for o in objs)
        result = self.kubectl("get", "--ignore-not-found", "-o", "json", "-f", "-", input=text, check=False)
        if result.returncode != 0:  # one unknown kind fails the batch: ask one by one
            if len(objs) == 1:
                return {}
            found: dict[tuple[str, str, str, str], dict[str, Any]] = {}
            for obj in objs:
                found.update(self._get([obj]))
            return found
        if not result.stdout.strip():
            return {}
        data = json.loads(result.stdout)
        items = data.get("items", []) if data.get("kind") == "List" else [data]
        return {Task(item, "Sync", False).identity: item for item in items}

    def _remove_finalizer(self, task: Task) -> None:
        """removeHookFinalizer: a full UPDATE of the live object without Argo CD's finalizer."""
        live = task.live
        if not live or HOOK_FINALIZER not in live["metadata"].get("finalizers", []):
            return
        live["metadata"]["finalizers"] = [f for f in live["metadata"]["finalizers"] if f != HOOK_FINALIZER]
        result = self.kubectl(
            "replace", f"--field-manager={MANAGER}", "-f", "-", input=json.dumps(live), check=False
        )
        self._event(
            f"hook finalizer removed {task.ref}"
            + (f": FAILED {result.stderr.strip()}" if result.returncode else "")
        )

    def _delete_hooks(self, tasks: list[Task], why: str) -> None:
        for task in tasks:
            self._remove_finalizer(task)
            self._delete(task, why)

    def _delete(self, task: Task, why: str) -> None:
        self.kubectl(
            "delete", "--cascade=foreground", "--wait=false", "--ignore-not-found", "-f", "-",
            input=json.dumps(task.obj), check=False,
        )  # fmt: skip
        self._event(f"{'deleted' if task.prune else 'hook deleted'} {task.ref} ({why})")

    def _running(self, tasks: list[Task], waiting_for: str = "") -> None:
        """setRunningPhase: the message names the first task and counts the rest."""
        if not tasks:
            return
        first = tasks[0]
        what = waiting_for or ("completion of hook" if first.hook else "healthy state of")
        message = f"waiting for {what} {first.ref}"
        if len(tasks) > 1:
            message += f" and {len(tasks) - 1} more {'hooks' if first.hook else 'resources'}"
        self._set_message(message)

    def _set_message(self, message: str) -> None:
        if message != self.message:
            self.message = message
            self._event(f"message: {message}")

    def _finish(self, phase: str, message: str) -> None:
        self.phase = phase
        self._set_message(message)
        self._event(f"phase {phase}")

    def _event(self, text: str) -> None:
        self.timeline.append((round(time.monotonic() - self._start, 1), text))
