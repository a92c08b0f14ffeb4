"""mutate(object, operation, configuration) -> (object, decision): the one entry point of the engine."""

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
from app.engine.objects import InvalidObject, JsonObject, PodView, copy_path, pod_view, target_of
from app.engine.recognise import Recognition, recognise, wait_container_index

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


def mutate(obj: object, operation: str, config: EngineConfig) -> MutationResult:
    """Decide about one object as the API server would send it, and return what to store. Never raises:
    a malformed object is `invalid_object`, a bug of the engine `engine_error`, both left unchanged."""
    try:
        return _mutate(obj, operation, config)
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


def _mutate(obj: object, operation: str, config: EngineConfig) -> MutationResult:
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
    return _workload(obj, view, recognition, config)


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
) -> tuple[Reason | None, list[str]]:
    """None when the workload should migrate, else the reason it should not; plus warnings."""
    default = None if config.migrates(recognition.component) else Reason.COMPONENT_NOT_MIGRATING
    override = view.annotations.get(keys.MIGRATE)
    if override is None:
        return default, []
    value = override.strip().lower()
    if value in ("true", "false"):
        return (None if value == "true" else Reason.MIGRATE_ANNOTATION_FALSE), []
    return default, [f'ignored {keys.MIGRATE}: {override!r} (expected "true" or "false")']


def _workload(
    obj: JsonObject, view: PodView, recognition: Recognition, config: EngineConfig
) -> MutationResult:
    main = recognition.main_container
    if main is None:
        return MutationResult(obj, _decided(Reason.NO_AIRFLOW_CONTAINER, recognition))
    not_migrating, warnings = _migrates(view, recognition, config)
    if not_migrating is not None:
        return MutationResult(obj, _decided(not_migrating, recognition, warnings=tuple(warnings)))
    main_env = {e.get("name"): e.get("value") for e in main.get("env", []) if isinstance(e, dict)}
    if recognition.profile.self_migrating_env and all(
        main_env.get(name) == value for name, value in recognition.profile.self_migrating_env
    ):
        return MutationResult(obj, _decided(Reason.SELF_MIGRATING, recognition, warnings=tuple(warnings)))

    others = [c for c in view.init_containers if c.get("name") != STEP_CONTAINER_NAME]
    wait_index = wait_container_index(others, recognition.profile)
    wait = others[wait_index] if wait_index is not None else None
    step, step_warnings = build_step(recognition.profile, main, wait, config)
    warnings += step_warnings

    workload, spec = copy_path(obj, view.spec_path)
    spec["initContainers"] = [*others]
    spec["initContainers"].insert(len(others) if wait_index is None else wait_index, step)
    workload = _with_status(workload, recognition, [f"initContainer/{STEP_CONTAINER_NAME}"])
    had_step = len(others) != len(view.init_containers)
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
