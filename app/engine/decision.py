"""Named decisions: every inject or skip carries one reason code with one human message.

The same code is reused in log lines, metric labels, AdmissionResponse warnings and CLI reports,
so an operator can grep for it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    """What the engine did to the object."""

    INJECT = "inject"  # the object was changed
    SKIP = "skip"  # the object is returned unchanged


class Reason(StrEnum):
    """Why the engine changed an object or left it alone. Values are stable API (metric labels)."""

    INJECTED = "injected"
    REINJECTED = "reinjected"
    UP_TO_DATE = "up_to_date"
    HOOK_JOB_MARKED = "hook_job_marked"
    JOB_FORCE_SYNC_ADDED = "job_force_sync_added"
    NOT_AIRFLOW = "not_airflow"
    NO_AIRFLOW_CONTAINER = "no_airflow_container"
    UNSUPPORTED_KIND = "unsupported_kind"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    OPTED_OUT = "opted_out"
    COMPONENT_NOT_MIGRATING = "component_not_migrating"
    MIGRATE_ANNOTATION_FALSE = "migrate_annotation_false"
    SELF_MIGRATING = "self_migrating"
    JOB_UPDATE_NEVER_PATCHED = "job_update_never_patched"
    POD_UPDATE_NEVER_PATCHED = "pod_update_never_patched"
    JOB_NOT_MIGRATION = "job_not_migration"
    JOB_NOT_ARGOCD_MANAGED = "job_not_argocd_managed"
    JOB_FORCE_DISABLED = "job_force_disabled"
    INVALID_OBJECT = "invalid_object"
    ENGINE_ERROR = "engine_error"

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES: dict[Reason, str] = {
    Reason.INJECTED: "added the airflow-db-migrate init container",
    Reason.REINJECTED: "rebuilt the airflow-db-migrate init container from the current pod spec",
    Reason.UP_TO_DATE: "already carries everything the webhook adds; nothing to change",
    Reason.HOOK_JOB_MARKED: "migration Job is a Helm/Argo CD hook; only the status annotation was added",
    Reason.JOB_FORCE_SYNC_ADDED: "added Force=true to argocd.argoproj.io/sync-options of the migration Job",
    Reason.NOT_AIRFLOW: "not an Airflow workload",
    Reason.NO_AIRFLOW_CONTAINER: "carries Airflow chart labels but runs no Airflow container",
    Reason.UNSUPPORTED_KIND: "kind is not a Deployment, StatefulSet, Job or Pod",
    Reason.UNSUPPORTED_OPERATION: "only CREATE and UPDATE are handled",
    Reason.OPTED_OUT: 'opted out with the annotation airflow-migration-webhook/inject: "false"',
    Reason.COMPONENT_NOT_MIGRATING: "this Airflow component does not run migrations (configuration)",
    Reason.MIGRATE_ANNOTATION_FALSE: "migration disabled by the annotation airflow-migration-webhook/migrate",
    Reason.SELF_MIGRATING: "the chart already migrates in this workload's main container",
    Reason.JOB_UPDATE_NEVER_PATCHED: "Jobs are changed on CREATE only (their pod template is immutable)",
    Reason.POD_UPDATE_NEVER_PATCHED: "Pods are changed on CREATE only (their init containers are immutable)",
    Reason.JOB_NOT_MIGRATION: "Airflow Job that does not migrate the database",
    Reason.JOB_NOT_ARGOCD_MANAGED: "plain migration Job not tracked by Argo CD; nothing to add",
    Reason.JOB_FORCE_DISABLED: "the Job sets Force=false in argocd.argoproj.io/sync-options; left alone",
    Reason.INVALID_OBJECT: "the object is malformed; left unchanged",
    Reason.ENGINE_ERROR: "internal error in the webhook; object admitted unchanged",
}


@dataclass(frozen=True)
class Decision:
    """The engine's verdict on one object."""

    action: Action
    reason: Reason
    profile: str | None = None
    component: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    detail: str | None = None

    @property
    def message(self) -> str:
        return self.reason.message if self.detail is None else f"{self.reason.message}: {self.detail}"
