"""Read-only views over the Kubernetes objects the engine handles, with shape checks.

The API server hands us defaulted, valid objects, but the offline CLI reads whatever a user pipes in:
every accessor raises `InvalidObject` with a path instead of letting a TypeError escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]

# (apiVersion, kind) -> path from the object to its pod template (None: the object is the pod)
POD_TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("apps/v1", "Deployment"): ("spec", "template"),
    ("apps/v1", "StatefulSet"): ("spec", "template"),
    ("batch/v1", "Job"): ("spec", "template"),
    ("v1", "Pod"): None,
}


class InvalidObject(ValueError):
    """The object does not have the shape Kubernetes gives it."""


def mapping_at(obj: JsonObject, path: tuple[str, ...], *, create: bool = False) -> JsonObject:
    """The dict at `path`; missing levels are created when `create`, else an empty dict is returned."""
    current: Any = obj
    walked: list[str] = []
    for key in path:
        walked.append(key)
        child = current.get(key)
        if child is None:
            if not create:
                return {}
            child = current[key] = {}
        if not isinstance(child, dict):
            raise InvalidObject(f"{'.'.join(walked)} must be an object, got {type(child).__name__}")
        current = child
    return current  # type: ignore[no-any-return]


def copy_path(obj: JsonObject, path: tuple[str, ...]) -> tuple[JsonObject, JsonObject]:
    """A shallow copy of `obj` with fresh dicts along `path`; returns (copy, dict at path).

    Copy-on-write: everything off the path is shared with `obj`, so changing a 1 MiB object costs what the
    change costs, not a deep copy. Neither the input nor the result may be changed in place afterwards.
    """
    root = dict(obj)
    current = root
    walked: list[str] = []
    for key in path:
        walked.append(key)
        child = current.get(key)
        if child is not None and not isinstance(child, dict):
            raise InvalidObject(f"{'.'.join(walked)} must be an object, got {type(child).__name__}")
        current[key] = fresh = dict(child or {})
        current = fresh
    return root, current


def string_map(obj: JsonObject, path: tuple[str, ...]) -> dict[str, str]:
    """Labels or annotations at `path`, checked to be a string map. A null value (`user:` with nothing
    after it) is read as the empty string, as the API server stores it."""
    found = mapping_at(obj, path)
    nulls = False
    for key, value in found.items():
        if value is None:
            nulls = True
        elif not isinstance(value, str):
            raise InvalidObject(f"{'.'.join(path)}[{key!r}] must be a string")
    return {key: value or "" for key, value in found.items()} if nulls else found


def container_list(spec: JsonObject, key: str) -> list[JsonObject]:
    items = spec.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidObject(f"spec.{key} must be a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidObject(f"spec.{key}[{index}] must be an object")
        if not isinstance(item.get("name", ""), str) or not isinstance(item.get("image", ""), str):
            raise InvalidObject(f"spec.{key}[{index}] name and image must be strings")
        for list_key in ("command", "args", "env", "envFrom", "volumeMounts"):
            if not isinstance(item.get(list_key, []), list):
                raise InvalidObject(f"spec.{key}[{index}].{list_key} must be a list")
    return items


@dataclass(frozen=True)
class PodView:
    """Where the pod of a target object lives, plus everything recognition reads from it."""

    kind: str
    template_path: tuple[str, ...]  # () for a Pod
    labels: dict[str, str]  # object labels overlaid with pod template labels
    annotations: dict[str, str]  # object annotations overlaid with pod template annotations
    containers: list[JsonObject]
    init_containers: list[JsonObject]

    @property
    def spec_path(self) -> tuple[str, ...]:
        return (*self.template_path, "spec")


def target_of(obj: object) -> tuple[str, tuple[str, ...] | None] | None:
    """(kind, template path) for a handled object, None for any other kind."""
    if not isinstance(obj, dict):
        raise InvalidObject("the object must be a JSON/YAML mapping")
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in POD_TEMPLATE_PATHS:
        return None
    return str(key[1]), POD_TEMPLATE_PATHS[key]


def pod_view(obj: JsonObject, kind: str, template_path: tuple[str, ...] | None) -> PodView:
    path = template_path or ()
    labels = {**string_map(obj, ("metadata", "labels")), **string_map(obj, (*path, "metadata", "labels"))}
    annotations = {
        **string_map(obj, ("metadata", "annotations")),
        **string_map(obj, (*path, "metadata", "annotations")),
    }
    spec = mapping_at(obj, (*path, "spec"))
    return PodView(
        kind=kind,
        template_path=path,
        labels=labels,
        annotations=annotations,
        containers=container_list(spec, "containers"),
        init_containers=container_list(spec, "initContainers"),
    )


def command_line(container: JsonObject) -> str:
    """command + args as one string, for pattern matching (shell scripts included)."""
    parts = [*container.get("command", []), *container.get("args", [])]
    return " ".join(part for part in parts if isinstance(part, str))


def image_repository_name(image: str) -> str:
    """`registry:5000/org/airflow:2.9.3@sha256:...` -> `airflow`."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def image_tag(image: str) -> str | None:
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None
