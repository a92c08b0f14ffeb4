"""Is this object an Airflow workload, of which flavour, which component, and which is its Airflow container?

Recognition reads only content (labels, images, commands), never object names.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.names import STEP_CONTAINER_NAME
from app.engine.objects import JsonObject, PodView, command_line, image_repository_name
from app.engine.profiles import AIRFLOW_COMPONENT_COMMAND, FALLBACK, PROFILES, WAIT_COMMAND, Profile, matches


@dataclass(frozen=True)
class Recognition:
    profile: Profile
    component: str | None
    main_container: (
        JsonObject | None
    )  # the pod's Airflow container, None when labels say Airflow but none runs


def is_airflow_container(container: JsonObject) -> bool:
    image = container.get("image") or ""
    return image_repository_name(image) == "airflow" or running_component(container) is not None


def running_component(container: JsonObject) -> str | None:
    """`airflow celery worker` -> `worker`; `exec airflow scheduler` -> `scheduler`."""
    found = matches(AIRFLOW_COMPONENT_COMMAND, command_line(container))
    if found is None:
        return None
    return found.group(1).split()[-1]


def _env_value(container: JsonObject, name: str) -> str | None:
    for entry in container.get("env", []):
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get("value"), str):
            return str(entry["value"])
    return None


def _profile_for(view: PodView) -> Profile | None:
    for profile in PROFILES:
        if profile.matches_labels(view.labels):
            return profile
    images = [str(c.get("image") or "") for c in view.containers]
    for profile in PROFILES:
        if any(profile.matches_image(image) for image in images):
            return profile
    if any(is_airflow_container(c) for c in view.containers):
        return FALLBACK
    return None


def _main_container(view: PodView, profile: Profile, component: str | None) -> JsonObject | None:
    for container in view.containers:
        if is_airflow_container(container):
            return container
    if profile.main_container_name and component:
        wanted = profile.main_container_name.format(component=component)
        for container in view.containers:
            if container.get("name") == wanted:
                return container
    return None


def recognise(view: PodView) -> Recognition | None:
    """None when the object is not an Airflow workload."""
    profile = _profile_for(view)
    if profile is None:
        return None
    component = view.labels.get(profile.component_label) if profile.component_label else None
    main = _main_container(view, profile, component)
    if component is None and main is not None:
        if profile.component_env:
            component = _env_value(main, profile.component_env)
        component = component or running_component(main)
    return Recognition(profile=profile, component=component, main_container=main)


def own_migrator(recognition: Recognition) -> str | None:
    """How this workload is the chart's own migrator (its main container migrates the database), None when
    it is not: a migration component (the community chart's `db-migrations` Deployment), or the env that
    tells the image to migrate at start (Bitnami's web with `setupDBJob.enabled=false`)."""
    profile = recognition.profile
    if recognition.component in profile.migration_components:
        return f"is the chart's migrator (component {recognition.component})"
    main = recognition.main_container
    wanted = profile.self_migrating_env
    if main is not None and wanted and all(_env_value(main, name) == value for name, value in wanted):
        return f"migrates in its main container ({' '.join(f'{name}={value}' for name, value in wanted)})"
    return None


def wait_container_index(init_containers: list[JsonObject], profile: Profile) -> int | None:
    """Index of the chart's wait-for-migrations init container (ours excluded), None when there is none."""
    for index, container in enumerate(init_containers):
        name = container.get("name")
        if name == STEP_CONTAINER_NAME:
            continue
        if name in profile.wait_container_names or matches(WAIT_COMMAND, command_line(container)):
            return index
    return None
