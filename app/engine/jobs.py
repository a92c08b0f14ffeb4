"""Rules for Jobs: changed on CREATE only, and only the migration Jobs.

A Job's pod template is immutable and Argo CD removes its hook finalizer with a full UPDATE, so any
change on UPDATE would make that UPDATE fail and the hook Job stick forever.
"""

from __future__ import annotations

from app.engine import names as keys
from app.engine.decision import Reason
from app.engine.objects import JsonObject, PodView, command_line, mapping_at
from app.engine.profiles import MIGRATE_COMMAND, matches
from app.engine.recognise import Recognition

FORCE_OPTION = "Force=true"


def is_migration_job(view: PodView, recognition: Recognition) -> bool:
    if recognition.component in recognition.profile.migration_components:
        return True
    return any(matches(MIGRATE_COMMAND, command_line(c)) for c in view.containers)


def is_hook(annotations: dict[str, str]) -> bool:
    """A Helm or Argo CD hook (the Job's own annotations): Argo CD runs it in a phase of its own."""
    return keys.HELM_HOOK in annotations or keys.ARGOCD_HOOK in annotations


def apply_job_rules(job: JsonObject, view: PodView, recognition: Recognition) -> tuple[Reason, list[str]]:
    """Mutates `job` (a copy) in place for a CREATE; returns the reason and warnings."""
    if not is_migration_job(view, recognition):
        return Reason.JOB_NOT_MIGRATION, []
    annotations = mapping_at(job, ("metadata", "annotations"))
    labels = mapping_at(job, ("metadata", "labels"))
    if is_hook(annotations):
        return Reason.HOOK_JOB_MARKED, []
    if keys.ARGOCD_TRACKING_ID not in annotations and keys.INSTANCE_LABEL not in labels:
        return Reason.JOB_NOT_ARGOCD_MANAGED, []
    warnings = []
    if mapping_at(job, ("spec",)).get("ttlSecondsAfterFinished") is not None:
        warnings.append(
            "the migration Job sets ttlSecondsAfterFinished: once it is deleted Argo CD shows it Missing and "
            "self-heal re-runs it; set migrateDatabaseJob.ttlSecondsAfterFinished to null in the chart values"
        )
    current = annotations.get(keys.ARGOCD_SYNC_OPTIONS, "")
    options = {part.replace(" ", "").lower() for part in current.split(",")}
    if "force=false" in options:
        return Reason.JOB_FORCE_DISABLED, warnings
    if FORCE_OPTION.lower() in options:
        return Reason.JOB_FORCE_SYNC_PRESENT, warnings
    # append to the user's text as written: only add, never rewrite what the chart rendered
    separator = "" if not current.strip() or current.rstrip().endswith(",") else ","
    merged = current + separator + FORCE_OPTION
    mapping_at(job, ("metadata", "annotations"), create=True)[keys.ARGOCD_SYNC_OPTIONS] = merged
    return Reason.JOB_FORCE_SYNC_ADDED, warnings
