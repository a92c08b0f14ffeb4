"""mutate(object, operation, configuration[, release]) -> (object, decision): the engine's one entry point."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from app import __version__
from app.engine import names as keys
from app.engine.config import EngineConfig
from app.engine.decision import Decision, Outcome, Reason
from app.engine.jobs import apply_job_rules
from app.engine.migrate_step import build_step
from app.engine.names import STEP_CONTAINER_NAME
from app.engine.objects import (
    InvalidObject,
    JsonObject,
    PodView,
    command_line,
    copy_path,
    pod_view,
    target_of,
)
from app.engine.profiles import Profile
from app.engine.recognise import Recognition, own_migrator, recognise, wait_container_index
from app.engine.release import Release, release_key
from app.engine.versions import airflow_1_evidence

ENGINE_VERSION = __version__
OPERATIONS = ("CREATE", "UPDATE")


@dataclass(frozen=True)
class MutationResult:
    """`object` is the input itself unless the outcome is `mutated`; then a copy of the changed paths that
    shares every unchanged subtree with the input (never modify either in place)."""

    object: JsonObject
    decision: Decision

    @property
    def changed(self) -> bool:
        return self.decision.outcome is Outcome.MUTATED


def mutate(
    obj: object, operation: str, config: EngineConfig, release: Release | None = None
) -> MutationResult:
    """Decide about one object as the API server would send it, and return what to store. Never raises:
    a malformed object is `invalid_object`, a bug of the engine `engine_error`, both left unchanged.

    `release`: what a front end that sees the whole release knows about it (`release_of`); None for the
    webhook, which sees one object at a time."""
    try:
        return _mutate(obj, operation, config, release)
    except InvalidObject as error:
        return MutationResult(
            obj if isinstance(obj, dict) else {}, _decided(Reason.INVALID_OBJECT, detail=str(error))
        )
    except Exception as error:  # every adapter answers the same way, whatever the engine does
        return MutationResult(
            obj if isinstance(obj, dict) else {}, _decided(Reason.ENGINE_ERROR, detail=repr(error))
        )


def _decided(reason: Reason, recognition: Recognition | None = None, **extra: object) -> Decision:
    return Decision(
        reason=reason,
        profile=recognition.profile.name if recognition else None,
        component=recognition.component if recognition else None,
        **extra,  # type: ignore[arg-type]
    )


def _mutate(obj: object, operation: str, config: EngineConfig, release: Release | None) -> MutationResult:
    target = target_of(obj)
    assert isinstance(obj, dict)  # target_of raised otherwise
    if target is None:
        return MutationResult(obj, _decided(Reason.UNSUPPORTED_KIND))
    if operation not in OPERATIONS:
        return MutationResult(obj, _decided(Reason.UNSUPPORTED_OPERATION))
    kind, template_path = target
    view = pod_view(obj, kind, template_path)
    recognition = recognise(view)
    if recognition is None:
        return MutationResult(obj, _decided(Reason.NOT_AIRFLOW))
    if view.annotations.get(keys.INJECT, "").strip().lower() == "false":
        return MutationResult(obj, _decided(Reason.OPTED_OUT, recognition))
    if kind == "Job":
        return _job(obj, view, recognition, operation)
    if kind == "Pod" and operation == "UPDATE":
        return MutationResult(obj, _decided(Reason.POD_UPDATE_NEVER_PATCHED, recognition))
    return _workload(obj, view, recognition, config, release)


def _job(obj: JsonObject, view: PodView, recognition: Recognition, operation: str) -> MutationResult:
    if operation != "CREATE":
        return MutationResult(obj, _decided(Reason.JOB_UPDATE_NEVER_PATCHED, recognition))
    job, _ = copy_path(obj, ("metadata", "annotations"))  # the rules only ever touch annotations
    reason, warnings = apply_job_rules(job, view, recognition)
    if reason.outcome is not Outcome.MUTATED:
        return MutationResult(obj, _decided(reason, recognition, warnings=tuple(warnings)))
    if reason is Reason.JOB_FORCE_SYNC_PRESENT and keys.STATUS in view.annotations:
        # our own output again (Force=true was added by the first pass): the status says what was added then
        return MutationResult(obj, _decided(Reason.UP_TO_DATE, recognition, warnings=tuple(warnings)))
    injected = ["sync-options/Force=true"] if reason is Reason.JOB_FORCE_SYNC_ADDED else []
    return _result(obj, _with_status(job, recognition, injected), reason, recognition, warnings)


def _migrates(
    view: PodView, recognition: Recognition, config: EngineConfig
) -> tuple[Reason | None, bool, list[str]]:
    """None when the workload should migrate, else the reason it should not; whether the annotation asks
    for the step explicitly; warnings."""
    default = None if config.migrates(recognition.component) else Reason.COMPONENT_NOT_MIGRATING
    override = view.annotations.get(keys.MIGRATE)
    if override is None:
        return default, False, []
    value = override.strip().lower()
    if value in ("true", "false"):
        return (None if value == "true" else Reason.MIGRATE_ANNOTATION_FALSE), value == "true", []
    return default, False, [f'ignored {keys.MIGRATE}: {override!r} (expected "true" or "false")']


def _cannot_tell(profile: Profile) -> str:
    return (
        f"the webhook sees one object at a time and cannot tell whether this release migrates without a hook "
        f"({profile.hookless_by_default}): if it does, this step is a second migrator racing the chart's own "
        f"(it checks first and retries, at one Airflow CLI start per pod start); "
        f'{keys.MIGRATE}: "false" on the pod template leaves it out'
    )


def _workload(
    obj: JsonObject, view: PodView, recognition: Recognition, config: EngineConfig, release: Release | None
) -> MutationResult:
    main = recognition.main_container
    if main is None:
        return MutationResult(obj, _decided(Reason.NO_AIRFLOW_CONTAINER, recognition))
    if own_migrator(recognition) is not None:
        return MutationResult(obj, _decided(Reason.SELF_MIGRATING, recognition))
    not_migrating, asked, warnings = _migrates(view, recognition, config)
    if not_migrating is not None:
        return MutationResult(obj, _decided(not_migrating, recognition, warnings=tuple(warnings)))
    others = [c for c in view.init_containers if c.get("name") != STEP_CONTAINER_NAME]
    had_step = len(others) != len(view.init_containers)
    hookless = None if release is None or asked else release.migrator(release_key(obj, view, recognition))
    if hookless is not None:
        if had_step:
            hookless += f"; the {STEP_CONTAINER_NAME} step already here stays (only additions are ever made)"
        return MutationResult(
            obj,
            _decided(
                Reason.RELEASE_MIGRATES_WITHOUT_HOOK, recognition, warnings=tuple(warnings), detail=hookless
            ),
        )
    # the step runs the main container's image; any container may show an Airflow 1 command
    airflow_1 = airflow_1_evidence(
        str(main.get("image") or ""),
        lambda: [command_line(c) for c in (*view.init_containers, *view.containers)],
    )
    if airflow_1 is not None:
        warnings.append(
            f"{airflow_1}: {Reason.AIRFLOW_VERSION_UNSUPPORTED.message}; if this release migrates in a "
            "post-install hook, Argo CD still deadlocks on it"
        )
        return MutationResult(
            obj, _decided(Reason.AIRFLOW_VERSION_UNSUPPORTED, recognition, warnings=tuple(warnings))
        )

    wait_index = wait_container_index(others, recognition.profile)
    wait = others[wait_index] if wait_index is not None else None
    step, step_warnings = build_step(recognition.profile, main, wait, config)
    warnings += step_warnings

    workload, spec = copy_path(obj, view.spec_path)
    spec["initContainers"] = [*others]
    spec["initContainers"].insert(len(others) if wait_index is None else wait_index, step)
    workload = _with_status(workload, recognition, [f"initContainer/{STEP_CONTAINER_NAME}"])
    if release is None and recognition.profile.hookless_by_default and workload != obj:
        warnings.append(_cannot_tell(recognition.profile))
    return _result(obj, workload, Reason.REINJECTED if had_step else Reason.INJECTED, recognition, warnings)


@functools.lru_cache(maxsize=64)
def _status_text(profile: str, injected: tuple[str, ...]) -> str:
    status = {"injected": list(injected), "profile": profile, "version": ENGINE_VERSION}
    return json.dumps(status, sort_keys=True, separators=(",", ":"))


def _with_status(obj: JsonObject, recognition: Recognition, injected: list[str]) -> JsonObject:
    changed, annotations = copy_path(obj, ("metadata", "annotations"))
    annotations[keys.STATUS] = _status_text(recognition.profile.name, tuple(injected))
    return changed


def _result(
    original: JsonObject, changed: JsonObject, reason: Reason, recognition: Recognition, warnings: list[str]
) -> MutationResult:
    if changed == original:
        return MutationResult(original, _decided(Reason.UP_TO_DATE, recognition, warnings=tuple(warnings)))
    return MutationResult(changed, _decided(reason, recognition, warnings=tuple(warnings)))
