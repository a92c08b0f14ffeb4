"""What a reader of live objects (doctor) needs to know about a pod or pod template, from the same
recognition the webhook uses: so that doctor and the webhook never disagree about what is Airflow."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.names import STEP_CONTAINER_NAME
from app.engine.objects import InvalidObject, pod_view, target_of
from app.engine.recognise import recognise, wait_container_index


@dataclass(frozen=True)
class PodFacts:
    profile: str
    component: str | None
    step_present: bool  # the airflow-db-migrate init container is in the spec
    wait_container: str | None  # the chart's wait-for-migrations init container, by name


def inspect(obj: object) -> PodFacts | None:
    """None for anything that is not an Airflow Deployment, StatefulSet, Job or Pod (or is malformed)."""
    try:
        target = target_of(obj)
        if target is None:
            return None
        assert isinstance(obj, dict)
        view = pod_view(obj, target[0], target[1])
    except InvalidObject:
        return None
    recognition = recognise(view)
    if recognition is None:
        return None
    names = [str(c.get("name")) for c in view.init_containers]
    wait_index = wait_container_index(view.init_containers, recognition.profile)
    return PodFacts(
        profile=recognition.profile.name,
        component=recognition.component,
        step_present=STEP_CONTAINER_NAME in names,
        wait_container=names[wait_index] if wait_index is not None else None,
    )
