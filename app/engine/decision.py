"""Named decisions: every object gets one reason code, with one outcome and one human message.

The same code and outcome are reused in log lines, metric labels, AdmissionResponse warnings, CLI reports,
reconcile results and doctor findings, so an operator can grep for them anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What happened to the object. Values are stable API (metric labels, reports)."""

    MUTATED = "mutated"  # the webhook changed the object
    UNCHANGED = "unchanged"  # an Airflow object that already carries everything the webhook adds
    SKIPPED = "skipped"  # not the webhook's business (not Airflow, not migrating, opted out, ...)
    ERROR = "error"  # the webhook failed; the object is admitted unchanged


class Reason(StrEnum):
    """Why the outcome. Values are stable API (metric labels)."""

    INJECTED = "injected"
    REINJECTED = "reinjected"
    UP_TO_DATE = "up_to_date"
    HOOK_JOB_MARKED = "hook_job_marked"
    JOB_FORCE_SYNC_ADDED = "job_force_sync_added"
    JOB_FORCE_SYNC_PRESENT = "job_force_sync_present"
    NOT_AIRFLOW = "not_airflow"
    NO_AIRFLOW_CONTAINER = "no_airflow_container"
    UNSUPPORTED_KIND = "unsupported_kind"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    OPTED_OUT = "opted_out"
    COMPONENT_NOT_MIGRATING = "component_not_migrating"
    MIGRATE_ANNOTATION_FALSE = "migrate_annotation_false"
    SELF_MIGRATING = "self_migrating"
    RELEASE_MIGRATES_WITHOUT_HOOK = "release_migrates_without_hook"
    AIRFLOW_VERSION_UNSUPPORTED = "airflow_version_unsupported"
    JOB_UPDATE_NEVER_PATCHED = "job_update_never_patched"
    POD_UPDATE_NEVER_PATCHED = "pod_update_never_patched"
    JOB_NOT_MIGRATION = "job_not_migration"
    JOB_NOT_ARGOCD_MANAGED = "job_not_argocd_managed"
    JOB_FORCE_DISABLED = "job_force_disabled"
    INVALID_OBJECT = "invalid_object"
    ENGINE_ERROR = "engine_error"

    @property
    def outcome(self) -> Outcome:
        return _TABLE[self][0]

    @property
    def message(self) -> str:
        return _TABLE[self][1]


_MUTATED, _UNCHANGED, _SKIPPED, _ERROR = Outcome.MUTATED, Outcome.UNCHANGED, Outcome.SKIPPED, Outcome.ERROR
_TABLE: dict[Reason, tuple[Outcome, str]] = {
    Reason.INJECTED: (_MUTATED, "added the airflow-db-migrate init container"),
    Reason.REINJECTED: (_MUTATED, "rebuilt the airflow-db-migrate init container from the current pod spec"),
    Reason.UP_TO_DATE: (_UNCHANGED, "already carries everything the webhook adds; nothing to change"),
    Reason.HOOK_JOB_MARKED: (
        _MUTATED,
        "migration Job is a Helm/Argo CD hook; only the status annotation was added",
    ),
    Reason.JOB_FORCE_SYNC_ADDED: (
        _MUTATED,
        "added Force=true to argocd.argoproj.io/sync-options of the migration Job",
    ),
    Reason.JOB_FORCE_SYNC_PRESENT: (
        _MUTATED,
        "the migration Job already sets Force=true; only the status annotation was added",
    ),
    Reason.NOT_AIRFLOW: (_SKIPPED, "not an Airflow workload"),
    Reason.NO_AIRFLOW_CONTAINER: (_SKIPPED, "carries Airflow chart labels but runs no Airflow container"),
    Reason.UNSUPPORTED_KIND: (_SKIPPED, "kind is not a Deployment, StatefulSet, Job or Pod"),
    Reason.UNSUPPORTED_OPERATION: (_SKIPPED, "only CREATE and UPDATE are handled"),
    Reason.OPTED_OUT: (_SKIPPED, 'opted out with the annotation airflow-migration-webhook/inject: "false"'),
    Reason.COMPONENT_NOT_MIGRATING: (
        _SKIPPED,
        "this Airflow component does not run migrations (configuration)",
    ),
    Reason.MIGRATE_ANNOTATION_FALSE: (
        _SKIPPED,
        "migration disabled by the annotation airflow-migration-webhook/migrate",
    ),
    Reason.SELF_MIGRATING: (_SKIPPED, "the chart already migrates in this workload's main container"),
    Reason.RELEASE_MIGRATES_WITHOUT_HOOK: (
        _SKIPPED,
        "this release already migrates without a hook (nothing deadlocks; a migrate step would only race "
        "the chart's own migrator)",
    ),
    Reason.AIRFLOW_VERSION_UNSUPPORTED: (
        _SKIPPED,
        "Airflow 1.x: the migrate step needs the `airflow db` commands of Airflow 2 or later; nothing added",
    ),
    Reason.JOB_UPDATE_NEVER_PATCHED: (
        _SKIPPED,
        "Jobs are changed on CREATE only (their pod template is immutable)",
    ),
    Reason.POD_UPDATE_NEVER_PATCHED: (
        _SKIPPED,
        "Pods are changed on CREATE only (their init containers are immutable)",
    ),
    Reason.JOB_NOT_MIGRATION: (_SKIPPED, "Airflow Job that does not migrate the database"),
    Reason.JOB_NOT_ARGOCD_MANAGED: (_SKIPPED, "plain migration Job not tracked by Argo CD; nothing to add"),
    Reason.JOB_FORCE_DISABLED: (
        _SKIPPED,
        "the Job sets Force=false in argocd.argoproj.io/sync-options; left alone",
    ),
    Reason.INVALID_OBJECT: (_SKIPPED, "the object is malformed; left unchanged"),
    Reason.ENGINE_ERROR: (_ERROR, "internal error in the webhook; object admitted unchanged"),
}


@dataclass(frozen=True)
class Decision:
    """The engine's outcome on one object: the reason code decides the outcome."""

    reason: Reason
    profile: str | None = None
    component: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    detail: str | None = None

    @property
    def outcome(self) -> Outcome:
        return self.reason.outcome

    @property
    def message(self) -> str:
        return self.reason.message if self.detail is None else f"{self.reason.message}: {self.detail}"
