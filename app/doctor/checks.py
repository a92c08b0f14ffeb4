"""Pure checks: a Snapshot in, findings out, in the order a person would look (webhook, namespace,
workloads, pods, migration Job, Argo CD). Workloads and pods are judged by the engine itself (`mutate` on
the live object, `inspect` on pods), so doctor and the webhook never disagree."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from app.config import NamespaceLabel
from app.doctor.context import Context
from app.doctor.findings import Code, Finding, Report, Severity, blocking_cause
from app.doctor.gather import JsonObject, Snapshot
from app.doctor.webhook import check_webhooks, ours, q, ref
from app.engine import ENGINE_VERSION, Reason, inspect, mutate, release_of
from app.engine.names import STEP_CONTAINER_NAME

_MIGRATION_JOB_REASONS = {
    Reason.HOOK_JOB_MARKED,
    Reason.JOB_FORCE_SYNC_ADDED,
    Reason.JOB_FORCE_SYNC_PRESENT,
    Reason.JOB_NOT_ARGOCD_MANAGED,
    Reason.JOB_FORCE_DISABLED,
    Reason.UP_TO_DATE,
}
# init container waits a person must act on (the kubelet retries the others by itself)
_BROKEN_START = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def diagnose(snap: Snapshot, context: Context) -> Report:
    webhooks = [w for c in snap.webhook_configurations for w in ours(c)]
    if webhooks:  # the label the webhook really selects on, for the commands doctor suggests
        key, _, value = _opt_in_label(webhooks[0].get("namespaceSelector"), context.label).partition("=")
        context = replace(context, label=NamespaceLabel(key=key, value=value))
    webhook_findings = check_webhooks(snap, context)
    findings = list(webhook_findings)
    for namespace in snap.namespaces:
        here = check_namespace(snap, namespace, context)
        if snap.namespaces[namespace] is not None:
            here += check_workloads(snap, namespace, context)
            here += check_pods(snap, namespace, context)
            here += check_jobs(snap, namespace, context)
            here += check_argocd(snap, namespace, webhook_findings + here, context.now)
        findings += here
    return Report(sorted(snap.namespaces), findings, list(snap.notes))


# --- 2. the namespace ---------------------------------------------------------------------------------------


def _label_list(labels: dict[str, str]) -> str:
    """`a=b,c=d`, as kubectl prints labels (`--show-labels`)."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or "<none>"


def _selector_text(selector: JsonObject | None) -> str:
    """A label selector as kubectl's `-l` syntax reads: `a=b,c in (x,y),d notin (z),e,!f`."""
    if not selector:
        return "<everything>"
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": f"{key}"}.get(
                str(operator), f"!{key}"
            )
        )
    return ",".join(terms)


def selects(selector: JsonObject | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a label set."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = (
            expression.get("key"),
            expression.get("operator"),
            expression.get("values") or [],
        )
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _opt_in_label(selector: JsonObject | None, fallback: NamespaceLabel) -> str:
    for expression in (selector or {}).get("matchExpressions") or []:
        if expression.get("operator") == "In" and expression.get("values"):
            return f"{expression['key']}={expression['values'][0]}"
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        return f"{key}={value}"
    return fallback.selector


def label_command(namespace: str, label: str) -> str:
    return f"kubectl label namespace {q(namespace)} {q(label)}"


def check_namespace(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    subject = f"Namespace/{namespace}"
    obj = snap.namespaces.get(namespace)
    if obj is None:
        return [Finding("namespace", subject, Severity.PROBLEM, Code.NAMESPACE_MISSING, "no such namespace")]
    own_labels = obj["metadata"].get("labels") or {}
    labels = {**own_labels, "kubernetes.io/metadata.name": namespace}
    webhooks = [w for c in snap.webhook_configurations for w in ours(c)]
    if not webhooks:  # judged against the configured opt-in label, which the chart installs by default
        wanted = context.label
        if labels.get(wanted.key) == wanted.value:
            return [
                Finding(
                    "namespace",
                    subject,
                    Severity.OK,
                    Code.NAMESPACE_SELECTED,
                    f"carries the opt-in label {wanted.selector} (no webhook installed to select it yet)",
                )
            ]
        return [
            Finding(
                "namespace",
                subject,
                Severity.PROBLEM,
                Code.NAMESPACE_NOT_SELECTED,
                f"not opted in: the namespace lacks the label {wanted.selector}, so even an installed "
                "webhook would never see its objects",
                evidence=(f"labels: {_label_list(own_labels)}",),
                fix=label_command(namespace, wanted.selector),
            )
        ]
    if any(selects(w.get("namespaceSelector"), labels) for w in webhooks):
        return [
            Finding("namespace", subject, Severity.OK, Code.NAMESPACE_SELECTED, "selected by the webhook")
        ]
    selector = webhooks[0].get("namespaceSelector")
    label = _opt_in_label(selector, context.label)
    key = label.split("=", 1)[0]
    excluded = key in labels and labels[key] == label.split("=", 1)[1]
    message = (
        "carries the opt-in label, but the webhook excludes it (its own namespace or excludeNamespaces)"
        if excluded
        else f"not opted in: the namespace lacks the label {label}, so the webhook never sees its objects"
    )
    return [
        Finding(
            "namespace",
            subject,
            Severity.PROBLEM,
            Code.NAMESPACE_NOT_SELECTED,
            message,
            evidence=(
                f"labels: {_label_list(own_labels)}",
                f"namespaceSelector: {_selector_text(selector)}",
            ),
            fix="" if excluded else label_command(namespace, label),
        )
    ]


# --- 3. workloads -------------------------------------------------------------------------------------------


def _in_release(obj: JsonObject, release: str | None) -> bool:
    if release is None:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return release in (labels.get("app.kubernetes.io/instance"), labels.get("release"))


def reconcile_command(namespace: str, label: NamespaceLabel) -> str:
    command = f"airflow-migration-webhook reconcile --namespace {q(namespace)}"
    if label != NamespaceLabel():
        command += f" --namespace-label-key {q(label.key)} --namespace-label-value {q(label.value)}"
    return command


def _airflow(objects: list[JsonObject], release: str | None) -> list[JsonObject]:
    """The Airflow objects of the release (all releases when None), as the engine recognises them."""
    return [obj for obj in objects if _in_release(obj, release) and inspect(obj) is not None]


# How doctor weighs the engine's verdict on a live workload: severity, what it says, whether `reconcile`
# fixes it. Other skips are fine as they are (the engine's own message says why).
_WORKLOAD_VERDICTS: dict[Reason, tuple[Severity, str, bool]] = {
    Reason.INJECTED: (
        Severity.PROBLEM,
        f"should carry the {STEP_CONTAINER_NAME} step and does not (created while the webhook was down or "
        "before the namespace was labelled): the webhook would add it",
        True,
    ),
    Reason.REINJECTED: (
        Severity.WARNING,
        f"carries a {STEP_CONTAINER_NAME} step built from an older spec or webhook version "
        f"(now {ENGINE_VERSION}); the webhook would rebuild it",
        True,
    ),
    Reason.UP_TO_DATE: (Severity.OK, "carries the step", False),
    Reason.OPTED_OUT: (Severity.WARNING, Reason.OPTED_OUT.message, False),
}


def check_workloads(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    """Each workload judged as `reconcile` judges it: with what the namespace says of its release (a
    migrator without a hook, such as the community chart's migration Deployment, means no step is due)."""
    findings = []
    release = release_of([*snap.workloads.get(namespace, []), *snap.jobs.get(namespace, [])])
    for workload in _airflow(snap.workloads.get(namespace, []), context.release):
        decision = mutate(workload, "UPDATE", context.engine, release).decision
        severity, message, reconciles = _WORKLOAD_VERDICTS.get(
            decision.reason, (Severity.OK, decision.message, False)
        )
        findings.append(
            Finding(
                "workload",
                ref(workload["kind"], workload),
                severity,
                decision.reason.value,
                f"{decision.profile or '?'} {decision.component or '?'}: {message}",
                evidence=decision.warnings if reconciles else (),
                fix=reconcile_command(namespace, context.label) if reconciles else "",
            )
        )
    if not findings:
        scope = f" of release {context.release}" if context.release else ""
        findings.append(
            Finding(
                "workload",
                f"Namespace/{namespace}",
                Severity.WARNING,
                Code.NO_AIRFLOW,
                f"no Airflow Deployment or StatefulSet{scope} here",
            )
        )
    return findings


# --- 4. pods ------------------------------------------------------------------------------------------------


def _since(timestamp: str | None, now: dt.datetime) -> str:
    if not timestamp:
        return ""
    try:
        started = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    minutes = int((now - started).total_seconds() // 60)
    return f" for {minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f" for {minutes}m"


def _owner(snap: Snapshot, namespace: str, pod: JsonObject) -> JsonObject | None:
    labels = pod["metadata"].get("labels") or {}
    for workload in snap.workloads.get(namespace, []):
        selector = (workload.get("spec") or {}).get("selector")
        if selector and selects(selector, labels):
            return workload
    return None


def _log_evidence(snap: Snapshot, namespace: str, pod: str, container: str) -> tuple[str, ...]:
    lines = snap.logs.get((namespace, pod, container), "logs unavailable (not read)")
    if isinstance(lines, str):
        return (f"{container}: {lines}",)
    return tuple(f"{container}: {line}" for line in lines) or (f"{container}: (no output)",)


def _condition_lines(obj: JsonObject, every: bool = False) -> tuple[str, ...]:
    """An object's conditions as kubectl describe names them (`PodScheduled=False (Unschedulable): 0/3 nodes
    are available: ...`): those not True, or `every` one."""
    lines = []
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and not every:
            continue
        reason = f" ({condition['reason']})" if condition.get("reason") else ""
        message = f": {condition['message']}" if condition.get("message") else ""
        lines.append(f"{condition.get('type')}={condition.get('status')}{reason}{message}")
    return tuple(lines)


def _started(status: JsonObject) -> bool:
    """The container ran at least once (it is running, it exited, or an earlier run exited)."""
    state = status.get("state") or {}
    return (
        "running" in state or "terminated" in state or bool((status.get("lastState") or {}).get("terminated"))
    )


@dataclass(frozen=True)
class Pending:
    """Why a pod none of whose containers has started is waiting: `why` in a few words (the scheduler's or
    the kubelet's reason), `evidence` their messages."""

    severity: Severity
    why: str
    evidence: tuple[str, ...]


def pending(pod: JsonObject) -> Pending | None:
    """None once a container has started. Not scheduled: the scheduler's PodScheduled=False and its reason
    (Unschedulable needs a person). Scheduled and not started: the first waiting container's reason (an image
    that cannot be pulled needs a person, ContainerCreating does not)."""
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    containers = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    if any(_started(c) for c in containers):
        return None
    conditions = _condition_lines(pod)
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    node = (pod.get("spec") or {}).get("nodeName")
    if scheduled is not None and scheduled.get("status") == "False":
        reason = str(scheduled.get("reason") or "no reason given")
        severity = Severity.PROBLEM if reason == "Unschedulable" else Severity.WARNING
        return Pending(severity, f"not scheduled ({reason})", conditions)
    if not node and (scheduled is None or scheduled.get("status") != "True"):
        return Pending(Severity.WARNING, "not scheduled yet (no node chosen, no PodScheduled condition)", ())
    waiting = next((c for c in containers if (c.get("state") or {}).get("waiting")), None)
    if waiting is None:
        return Pending(
            Severity.WARNING, f"scheduled on {node or 'a node'}, no container started yet", conditions
        )
    detail = waiting["state"]["waiting"]
    reason = str(detail.get("reason") or "waiting")
    said = (f"{waiting.get('name')}: {reason}: {detail['message']}",) if detail.get("message") else ()
    return Pending(
        Severity.PROBLEM if reason in _BROKEN_START else Severity.WARNING,
        f"scheduled on {node or 'a node'}, not started ({waiting.get('name')}: {reason})",
        conditions + said,
    )


def check_pods(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    findings: list[Finding] = []
    running = finished = 0
    for pod in snap.pods.get(namespace, []):
        facts = inspect(pod)
        if facts is None or not _in_release(pod, context.release):
            continue
        name = pod["metadata"]["name"]
        subject = ref("Pod", pod)
        describe = f"kubectl describe pod -n {q(namespace)} {q(name)}"
        status = pod.get("status") or {}
        if status.get("phase") == "Succeeded":
            finished += 1
            continue
        if status.get("phase") == "Failed":
            why = ": ".join(filter(None, (status.get("reason"), status.get("message")))) or "no reason given"
            findings.append(
                Finding(
                    "pod", subject, Severity.WARNING, Code.POD_FAILED, f"failed ({why})", look_at=describe
                )
            )
            continue
        waits = pending(pod)
        if waits is not None:
            since = _since(status.get("startTime") or pod["metadata"].get("creationTimestamp"), context.now)
            findings.append(
                Finding(
                    "pod",
                    subject,
                    waits.severity,
                    Code.POD_PENDING,
                    f"pending{since}: {waits.why}",
                    evidence=waits.evidence,
                    look_at=describe,
                )
            )
            continue
        statuses = status.get("initContainerStatuses") or []
        current = next(
            (s for s in statuses if ((s.get("state") or {}).get("terminated") or {}).get("exitCode") != 0),
            None,
        )
        if current is None:
            running += 1
            continue
        container = str(current.get("name"))
        state = current.get("state") or {}
        last = (current.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or {}
        exit_code = terminated.get("exitCode", last.get("exitCode"))
        waiting = (state.get("waiting") or {}).get("reason")
        # how long the pod has been stuck: since it started (a wait container that times out and restarts
        # begins a new attempt each time), with the restarts that took
        running_since = _since(
            status.get("startTime") or (state.get("running") or {}).get("startedAt"), context.now
        )
        if restarts := int(current.get("restartCount") or 0):
            running_since += f" ({restarts} restart{'s' if restarts > 1 else ''})"
        evidence = _log_evidence(snap, namespace, name, container)
        logs = f"kubectl logs -n {q(namespace)} {q(name)} -c {q(container)}"
        owner = _owner(snap, namespace, pod)
        if container == STEP_CONTAINER_NAME and exit_code not in (None, 0):
            findings.append(
                Finding(
                    "pod",
                    subject,
                    Severity.PROBLEM,
                    Code.STEP_FAILED,
                    f"{STEP_CONTAINER_NAME} failed with exit code {exit_code}"
                    + (f" ({waiting}, {current.get('restartCount', 0)} restarts)" if waiting else "")
                    + ": the pods wait for the migration it could not apply",
                    evidence=evidence,
                    look_at=logs,
                )
            )
        elif container == facts.wait_container and not facts.step_present and _started(current):
            owner_has_step = owner is not None and (inspect(owner) or facts).step_present
            # Under the default OrderedReady policy a StatefulSet does not replace a pod that is not Ready,
            # whatever its template says: such a pod must be deleted to be re-created with the step.
            stateful = owner is not None and owner.get("kind") == "StatefulSet"
            delete = f"kubectl delete pod -n {q(namespace)} {q(name)}"
            if owner is not None and owner_has_step:
                workload = f"{owner['kind'].lower()}/{owner['metadata']['name']}"
                fix = delete if stateful else f"kubectl rollout restart -n {q(namespace)} {q(workload)}"
            else:
                fix = reconcile_command(namespace, context.label) + (f" && {delete}" if stateful else "")
            findings.append(
                Finding(
                    "pod",
                    subject,
                    Severity.PROBLEM,
                    Code.WAITING_WITHOUT_STEP,
                    f"stuck in {container}{running_since}: it waits for a migration, and the pod has no "
                    f"{STEP_CONTAINER_NAME} step to run it"
                    + (" (its workload has the step now: the pod predates it)" if owner_has_step else ""),
                    evidence=evidence,
                    fix=fix,
                )
            )
        else:
            doing = "running" if "running" in state else "in"
            findings.append(
                Finding(
                    "pod",
                    subject,
                    Severity.WARNING,
                    Code.POD_STUCK_IN_INIT,
                    f"{doing} init container {container}{running_since}"
                    + (f" ({waiting})" if waiting else "")
                    + (f", last exit code {exit_code}" if exit_code not in (None, 0) else ""),
                    evidence=evidence,
                    look_at=logs,
                )
            )
    if running or finished:
        counts = [f"{running} running" if running else "", f"{finished} finished" if finished else ""]
        findings.append(
            Finding(
                "pod",
                f"Namespace/{namespace}",
                Severity.OK,
                Code.POD_READY,
                f"{running + finished} Airflow pod(s) past their init containers: "
                + ", ".join(filter(None, counts)),
            )
        )
    return findings


# --- 5. the migration Job and Argo CD -----------------------------------------------------------------------


def _pods_of(snap: Snapshot, namespace: str, job: JsonObject) -> list[JsonObject]:
    uid = (job.get("metadata") or {}).get("uid")
    name = (job.get("metadata") or {}).get("name")
    return [
        pod
        for pod in snap.pods.get(namespace, [])
        if any(
            o.get("kind") == "Job" and (o.get("uid") == uid or o.get("name") == name)
            for o in pod["metadata"].get("ownerReferences") or []
        )
    ]


def _not_started(pods: list[JsonObject]) -> str:
    waiting = [f"{ref('Pod', pod)} is pending: {waits.why}" for pod in pods if (waits := pending(pod))]
    if waiting:
        return "; ".join(waiting)
    if pods:
        return f"{len(pods)} pod(s), none running"
    return "no pod of it exists yet"


def check_jobs(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    findings = []
    for job in _airflow(snap.jobs.get(namespace, []), context.release):
        if mutate(job, "CREATE", context.engine).decision.reason not in _MIGRATION_JOB_REASONS:
            continue
        name = job["metadata"]["name"]
        subject = ref("Job", job)
        status = job.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        pods = _pods_of(snap, namespace, job)
        if "Failed" in conditions or (status.get("failed") and not status.get("active")):
            failed = conditions.get("Failed") or {}
            findings.append(
                Finding(
                    "job",
                    subject,
                    Severity.PROBLEM,
                    Code.JOB_FAILED,
                    " ".join(
                        ["the migration Job failed:", failed.get("reason", ""), failed.get("message", "")]
                    ).strip(),
                    look_at=f"kubectl logs -n {q(namespace)} job/{q(name)}",
                )
            )
        elif status.get("succeeded") or "Complete" in conditions:
            findings.append(
                Finding("job", subject, Severity.OK, Code.JOB_SUCCEEDED, "the migration Job succeeded")
            )
        elif (job.get("spec") or {}).get("suspend"):
            findings.append(
                Finding(
                    "job",
                    subject,
                    Severity.WARNING,
                    Code.JOB_PENDING,
                    "the migration Job is suspended: it creates no pod until resumed",
                    fix=f"kubectl patch job -n {q(namespace)} {q(name)} --type=merge -p "
                    '\'{"spec": {"suspend": false}}\'',
                )
            )
        else:
            alive = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            if alive:
                findings.append(
                    Finding(
                        "job",
                        subject,
                        Severity.OK,
                        Code.JOB_RUNNING,
                        f"the migration Job is running: {len(alive)} pod(s) running"
                        + _since(status.get("startTime"), context.now),
                    )
                )
            else:
                findings.append(
                    Finding(
                        "job",
                        subject,
                        Severity.WARNING,
                        Code.JOB_PENDING,
                        f"the migration Job has not started: {_not_started(pods)}",
                        evidence=_condition_lines(job, every=True),
                        look_at=f"kubectl describe job -n {q(namespace)} {q(name)}",
                    )
                )
    return findings


def _resource_name(resource: JsonObject) -> str:
    """As Argo CD names a resource in its messages: group/Kind/name (the core group is empty)."""
    return f"{resource.get('group', '')}/{resource.get('kind', '?')}/{resource.get('name', '?')}"


def check_argocd(snap: Snapshot, namespace: str, earlier: list[Finding], now: dt.datetime) -> list[Finding]:
    """An Application syncing into the namespace. A sync that runs while something here blocks the migration
    is the deadlock (or its last step): a problem, whose fix is that blocker's."""
    findings = []
    blocker = blocking_cause([f for f in earlier if f.severity is Severity.PROBLEM])
    for application in snap.applications or []:
        destination = (application.get("spec") or {}).get("destination") or {}
        if destination.get("namespace") != namespace:
            continue
        status: dict[str, Any] = application.get("status") or {}
        operation = status.get("operationState") or {}
        phase = operation.get("phase") or "none"
        message = str(operation.get("message") or "")
        sync = (status.get("sync") or {}).get("status", "?")
        health = (status.get("health") or {}).get("status", "?")
        # what the operation waits for: hooks still running, then resources not Healthy (grouped by state)
        hooks = [
            f"{_resource_name(r)}: {r.get('hookType', '')} hook {r.get('hookPhase', '')}"
            + (f" ({r['message']})" if r.get("message") else "")
            for r in (operation.get("syncResult") or {}).get("resources") or []
            if r.get("hookType") and r.get("hookPhase") in ("Running", "Pending")
        ]
        unhealthy: dict[str, list[str]] = {}
        for resource in status.get("resources") or []:
            state = resource.get("health") or {}
            if state.get("status") not in (None, "Healthy"):
                said = f"{state['status']}" + (f" ({state['message']})" if state.get("message") else "")
                unhealthy.setdefault(said, []).append(_resource_name(resource))
        started = _since(operation.get("startedAt"), now) if phase == "Running" else ""
        evidence = (
            f"sync {sync}, health {health}, operation {phase}{started}",
            *hooks,
            *(f"{', '.join(names)}: {said}" for said, names in unhealthy.items()),
        )
        subject = ref("Application", application)
        waiting_for = message or "running its sync"
        job = next((f for f in earlier if f.check == "job"), None)
        on_hook = "waiting for completion of hook" in message
        if (
            phase == "Running"
            and blocker is not None
            and not (on_hook and job and job.code == Code.JOB_RUNNING)
        ):
            if "waiting for healthy state" in message:
                why = (
                    "it creates the PostSync migration hook only once every workload is Healthy, and the "
                    "Airflow pods wait for that migration: the deadlock"
                )
            elif on_hook:
                why = (job.message if job else "that Job is not in the namespace") + (
                    "; the Airflow pods wait for the migration too"
                )
            else:
                why = "the Airflow pods wait for the migration"
            findings.append(
                Finding(
                    "argocd",
                    subject,
                    Severity.PROBLEM,
                    Code.ARGOCD_WAITING,
                    f"the sync is stuck: Argo CD is {waiting_for}; {why}. What keeps it: {blocker.subject} "
                    f"({blocker.code})",
                    evidence=evidence,
                    fix=blocker.fix,
                    look_at=blocker.look_at,
                )
            )
        elif phase == "Running":
            findings.append(
                Finding(
                    "argocd",
                    subject,
                    Severity.WARNING,
                    Code.ARGOCD_WAITING,
                    f"the sync is running: Argo CD is {waiting_for}"
                    + (f"; {job.message}" if on_hook and job else ""),
                    evidence=evidence,
                )
            )
        else:
            findings.append(
                Finding(
                    "argocd",
                    subject,
                    Severity.WARNING if phase in ("Failed", "Error") else Severity.OK,
                    Code.ARGOCD_OPERATION,
                    f"last operation {phase}" + (f": {message}" if message else ""),
                    evidence,
                )
            )
    return findings
