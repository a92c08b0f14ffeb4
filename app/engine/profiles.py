"""Chart knowledge as data: one declarative profile per Airflow flavour.

A profile says how to recognise the flavour, which label names the component, what the chart's
wait-for-migrations init container looks like, how the migrate step is invoked and which Jobs are the
chart's migration Jobs. Adding a flavour means adding a profile here, not `if`s elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class StepStyle(StrEnum):
    """How the injected step runs inside the image."""

    ENTRYPOINT_ARGS = "entrypoint_args"  # keep the image entrypoint, pass `bash -c SCRIPT` as args
    SHELL_COMMAND = "shell_command"  # override the entrypoint: `/bin/sh -c SCRIPT`
    BITNAMI_LIBRARY = "bitnami_library"  # `/bin/bash -ec SCRIPT` sourcing the image's shell library


@dataclass(frozen=True)
class Profile:
    name: str
    # Recognition: all of `labels` on the object or its pod template, or an image matching `image_pattern`.
    labels: tuple[tuple[str, str], ...] = ()
    image_pattern: re.Pattern[str] | None = None
    component_label: str | None = None
    # name of the Airflow container when its image and command do not tell (custom images);
    # `{component}` is replaced. Only for flavours whose naming is specific enough to trust.
    main_container_name: str | None = None
    wait_container_names: tuple[str, ...] = ()
    migration_job_components: frozenset[str] = frozenset()
    step_style: StepStyle = StepStyle.SHELL_COMMAND
    # env that tells the main container to migrate itself (the chart's own workaround is active)
    self_migrating_env: tuple[tuple[str, str], ...] = ()
    # env the migrate step gets when the pod does not already define it (`{admin_username}` expanded)
    extra_env: tuple[tuple[str, str], ...] = ()
    # a mount the extra env relies on; without it a warning says what will not work
    required_mount: str | None = None
    component_env: str | None = None  # env var naming the component when labels do not

    def matches_labels(self, labels: dict[str, str]) -> bool:
        return bool(self.labels) and all(labels.get(key) == value for key, value in self.labels)

    def matches_image(self, image: str) -> bool:
        return self.image_pattern is not None and self.image_pattern.search(image) is not None


OFFICIAL = Profile(
    name="official",
    labels=(("tier", "airflow"),),
    image_pattern=re.compile(r"(^|/)apache/airflow(:|@|$)"),
    component_label="component",
    wait_container_names=("wait-for-airflow-migrations",),
    migration_job_components=frozenset({"run-airflow-migrations"}),
    step_style=StepStyle.ENTRYPOINT_ARGS,
    # the image entrypoint would wait for the DB on its own; the step's bounded loop replaces that
    extra_env=(("CONNECTION_CHECK_MAX_COUNT", "0"),),
)

BITNAMI = Profile(
    name="bitnami",
    labels=(("app.kubernetes.io/name", "airflow"),),
    image_pattern=re.compile(r"(^|/)bitnami(legacy)?/airflow(:|@|$)"),
    component_label="app.kubernetes.io/component",
    main_container_name="airflow-{component}",
    wait_container_names=("wait-for-db-migrations",),
    migration_job_components=frozenset({"setup-db"}),
    step_style=StepStyle.BITNAMI_LIBRARY,
    self_migrating_env=(("AIRFLOW_SKIP_DB_SETUP", "no"),),
    extra_env=(
        ("AIRFLOW_USERNAME", "{admin_username}"),
        ("AIRFLOW_PASSWORD_FILE", "/opt/bitnami/airflow/secrets/airflow-password"),
    ),
    required_mount="/opt/bitnami/airflow/secrets",
    component_env="AIRFLOW_COMPONENT_TYPE",
)

PLAIN = Profile(
    name="plain",
    wait_container_names=("wait-for-airflow-migrations", "wait-for-db-migrations"),
    step_style=StepStyle.SHELL_COMMAND,
)

# Checked in order: a labelled chart wins over a bare image match; `plain` is the fallback.
PROFILES: tuple[Profile, ...] = (OFFICIAL, BITNAMI)
FALLBACK = PLAIN

# Any init container that waits with one of these is the chart's wait-for-migrations container.
WAIT_COMMAND = re.compile(r"db\s+check-migrations|airflow_wait_for_db_migrations")
# A container running an Airflow component: `airflow scheduler`, `exec airflow celery worker`, ...
AIRFLOW_COMPONENT_COMMAND = re.compile(
    r"(?:^|[\s;&|'\"/])airflow\s+(scheduler|webserver|api-server|triggerer|dag-processor|"
    r"celery\s+worker|celery\s+flower|kerberos|standalone)\b"
)
# A container (or script) that migrates the database.
MIGRATE_COMMAND = re.compile(r"(?:^|[\s;&|'\"/])(?:airflow|airflow_execute)\s+db\s+(migrate|upgrade|init)\b")
