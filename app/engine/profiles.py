"""Chart knowledge as data: one declarative profile per Airflow flavour.

A profile says how to recognise the flavour, which label names the component and which the release, what
the chart's wait-for-migrations init container looks like, how the migrate step is invoked and which
components are the chart's own migrators. Adding a flavour means adding a profile here, not `if`s elsewhere.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum


class StepStyle(StrEnum):
    """How the injected step's shell is started inside the image."""

    ENTRYPOINT_ARGS = "entrypoint_args"  # keep the image entrypoint, pass `SHELL... SCRIPT` as args
    COMMAND = "command"  # override the entrypoint: `SHELL... SCRIPT` as the command


@dataclass(frozen=True)
class ImageLine:
    """What the chart's own migration Job does on one line of a flavour's images.

    The step does what that Job would have done, and no more: the Job runs later (as a PostSync hook it sees
    an up-to-date database), so whatever it does only on a pending database is the step's to do.
    """

    # Airflow major versions of the line; empty: every other version, and images whose version is unknown
    majors: frozenset[int] = frozenset()
    # `airflow db <this>` when migrations are pending; None: by version (`migrate` >= 2.7, else `upgrade`)
    migrate_subcommand: str | None = None
    # after this pod (or a racing one) applied pending migrations, as the Job's "populate" branch does
    admin_user_after_migration: bool = False
    sync_perm_after_migration: bool = False


@dataclass(frozen=True)
class StepRecipe:
    """How the migrate step runs in the flavour's image."""

    style: StepStyle
    shell: tuple[str, ...]  # the interpreter and its flags; the script is the last argument
    preamble: tuple[str, ...] = ()  # script lines run first (the image's own shell library)
    image_lines: tuple[ImageLine, ...] = (ImageLine(),)
    # When the chart's wait container runs this, it waits for the admin user too: the step makes sure the
    # user exists on every start, or the pod would wait forever.
    admin_user_wait: re.Pattern[str] | None = None

    def line_for(self, major: int | None) -> ImageLine:
        for line in self.image_lines:
            if major is not None and major in line.majors:
                return line
        return next(line for line in self.image_lines if not line.majors)


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
    # the chart's own migrators: a migration Job, or a workload whose main container migrates (a loop)
    migration_components: frozenset[str] = frozenset()
    # the label naming the Helm release: objects of one release share its value (with their namespace)
    release_label: str | None = None
    step: StepRecipe = StepRecipe(StepStyle.COMMAND, ("/bin/sh", "-c"))
    # env that tells the main container to migrate itself (the chart's own workaround is active)
    self_migrating_env: tuple[tuple[str, str], ...] = ()
    # env the migrate step gets when the pod does not already define it (`{admin_username}` expanded)
    extra_env: tuple[tuple[str, str], ...] = ()
    # a mount the extra env relies on; without it a warning says what will not work
    required_mount: str | None = None
    component_env: str | None = None  # env var naming the component when labels do not
    # the component names this flavour's charts use (what `migrating_components` may name)
    components: frozenset[str] = frozenset()
    # When the chart's default values migrate without a hook (no deadlock), how: the webhook, which sees one
    # object at a time, cannot tell whether a release kept that default, and says so when it injects.
    hookless_by_default: str | None = None

    def matches_labels(self, labels: dict[str, str]) -> bool:
        return bool(self.labels) and all(labels.get(key) == value for key, value in self.labels)

    def matches_image(self, image: str) -> bool:
        return self.image_pattern is not None and self.image_pattern.search(image) is not None


OFFICIAL = Profile(
    name="official",
    labels=(("tier", "airflow"),),
    image_pattern=re.compile(r"(^|/)apache/airflow(:|@|$)"),
    component_label="component",
    components=frozenset(
        {"scheduler", "api-server", "webserver", "triggerer", "dag-processor", "worker", "flower", "statsd"}
    ),
    wait_container_names=("wait-for-airflow-migrations",),
    migration_components=frozenset({"run-airflow-migrations"}),
    release_label="release",
    step=StepRecipe(StepStyle.ENTRYPOINT_ARGS, ("bash", "-c")),
    # the image entrypoint would wait for the DB on its own; the step's bounded loop replaces that
    extra_env=(("CONNECTION_CHECK_MAX_COUNT", "0"),),
)

BITNAMI = Profile(
    name="bitnami",
    labels=(("app.kubernetes.io/name", "airflow"),),
    image_pattern=re.compile(r"(^|/)bitnami(legacy)?/airflow(:|@|$)"),
    component_label="app.kubernetes.io/component",
    components=frozenset({"scheduler", "web", "worker", "triggerer", "dag-processor"}),
    main_container_name="airflow-{component}",
    wait_container_names=("wait-for-db-migrations",),
    migration_components=frozenset({"setup-db"}),
    release_label="app.kubernetes.io/instance",
    step=StepRecipe(
        StepStyle.COMMAND,
        ("/bin/bash", "-ec"),
        # the image's environment: `airflow` of its venv on PATH, AIRFLOW_HOME, *_FILE secrets read,
        # AIRFLOW_USERNAME/EMAIL/... defaults. The CLI is then called directly (not `airflow_execute`, which
        # discards its output) so that a failure can say why.
        preamble=(". /opt/bitnami/scripts/airflow-env.sh", ". /opt/bitnami/scripts/libairflow.sh"),
        image_lines=(
            # charts <= 22.x: the setup Job runs `db init` + the admin user on a pending DB, `db upgrade` else
            ImageLine(frozenset({1, 2}), migrate_subcommand="init", admin_user_after_migration=True),
            # charts 23.x-25.x (Airflow 3): `db migrate`, and on a pending DB the admin user + `sync-perm`
            ImageLine(admin_user_after_migration=True, sync_perm_after_migration=True),
        ),
        admin_user_wait=re.compile(r"\bairflow_wait_for_admin_user\b"),
    ),
    self_migrating_env=(("AIRFLOW_SKIP_DB_SETUP", "no"),),
    extra_env=(
        ("AIRFLOW_USERNAME", "{admin_username}"),
        ("AIRFLOW_PASSWORD_FILE", "/opt/bitnami/airflow/secrets/airflow-password"),
    ),
    required_mount="/opt/bitnami/airflow/secrets",
    component_env="AIRFLOW_COMPONENT_TYPE",
)

# The User-Community chart (airflow-helm/charts `airflow` 8.x) runs the official `apache/airflow` images, so
# only its labels tell it apart. Its init containers `check-db` and `wait-for-db-migrations` (`airflow db
# check-migrations -t 60`) and its migrator, component `db-migrations`: a Deployment looping over
# `airflow.utils.db.upgradedb()` by default, a `post-install,post-upgrade` hook Job with
# `airflow.dbMigrations.runAsJob=true`. The step runs as the official image's (its entrypoint, `bash -c`).
COMMUNITY = Profile(
    name="community",
    labels=(("app", "airflow"),),
    component_label="component",
    release_label="release",
    components=frozenset({"scheduler", "web", "worker", "triggerer", "flower", "dag-processor"}),
    wait_container_names=("wait-for-db-migrations",),
    migration_components=frozenset({"db-migrations"}),
    step=StepRecipe(StepStyle.ENTRYPOINT_ARGS, ("bash", "-c")),
    extra_env=(("CONNECTION_CHECK_MAX_COUNT", "0"),),
    hookless_by_default=(
        "the User-Community chart migrates in its own db-migrations Deployment by default "
        "(airflow.dbMigrations.runAsJob=false)"
    ),
)

PLAIN = Profile(
    name="plain",
    wait_container_names=("wait-for-airflow-migrations", "wait-for-db-migrations"),
    # what `running_component` reads from `airflow <component>` commands
    components=frozenset(
        {"scheduler", "webserver", "api-server", "triggerer", "dag-processor", "worker", "flower", "kerberos"}
        | {"standalone"}
    ),
)

# Labels are checked first, in this order, then images: a labelled chart wins over a bare image match (the
# community chart runs `apache/airflow` images); `plain` is the fallback.
PROFILES: tuple[Profile, ...] = (OFFICIAL, BITNAMI, COMMUNITY)
FALLBACK = PLAIN
KNOWN_COMPONENTS = frozenset().union(*(profile.components for profile in (*PROFILES, FALLBACK)))

# Any init container that waits with one of these is the chart's wait-for-migrations container.
WAIT_COMMAND = re.compile(r"db\s+check-migrations|airflow_wait_for_db_migrations")
# A container running an Airflow component: `airflow scheduler`, `exec airflow celery worker`, ...
AIRFLOW_COMPONENT_COMMAND = re.compile(
    r"(?:^|[\s;&|'\"/])airflow\s+(scheduler|webserver|api-server|triggerer|dag-processor|"
    r"celery\s+worker|celery\s+flower|kerberos|standalone)\b"
)


@functools.lru_cache(maxsize=1024)
def matches(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """`pattern.search(text)`, remembered: the same chart scripts (kilobytes of shell) reach every review."""
    return pattern.search(text)


# Commands only Airflow 1.x has (Airflow 2 moved them under `airflow db`): a pod running one runs Airflow 1,
# whatever its image tag says (the community chart's `airflow.legacyCommands=true` renders `airflow checkdb`).
AIRFLOW_1_COMMAND = re.compile(r"(?:^|[\s;&|'\"/])airflow\s+(checkdb|initdb|upgradedb|resetdb)\b")

# A container (or script) that migrates the database.
MIGRATE_COMMAND = re.compile(r"(?:^|[\s;&|'\"/])(?:airflow|airflow_execute)\s+db\s+(migrate|upgrade|init)\b")
