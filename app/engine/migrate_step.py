"""Build the `airflow-db-migrate` init container from the pod's own Airflow container.

The step is rebuilt from the current pod spec on every pass, so an image bump moves it to the new image
and a second pass over its own output yields the same container.
"""

from __future__ import annotations

from app.engine.config import EngineConfig, MigrateStepConfig
from app.engine.objects import JsonObject
from app.engine.profiles import Profile, StepStyle
from app.engine.recognise import STEP_CONTAINER_NAME
from app.engine.versions import airflow_version, migrate_subcommand

# Copied verbatim from the Airflow container when present, in this order (readable goldens).
_COPIED_FIELDS = ("image", "imagePullPolicy", "workingDir")
_BITNAMI_LIBRARY = (". /opt/bitnami/scripts/airflow-env.sh", ". /opt/bitnami/scripts/libairflow.sh")
# Set explicitly to the API server's defaults so a stored object equals what the engine builds.
_API_DEFAULTS = {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}


def migrate_script(profile: Profile, subcommand: str, bounds: MigrateStepConfig) -> str:
    """POSIX shell: wait for the DB (bounded), exit if nothing is pending, migrate with retries."""
    bitnami = profile.step_style is StepStyle.BITNAMI_LIBRARY
    cli = "airflow_execute" if bitnami else "airflow"
    # `timeout` runs commands, not shell functions: the Bitnami migrate gets its own shell with the library
    migrate = f"{cli} db {subcommand}"
    if bitnami:
        migrate = f"/bin/bash -c '{'; '.join(_BITNAMI_LIBRARY)}; {migrate}'"
    lines = list(_BITNAMI_LIBRARY) if bitnami else []
    lines += [
        'say() { echo "airflow-db-migrate: $*"; }',
        'bounded() { if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }',
        "pending() { ! " + cli + " db check-migrations --migration-wait-timeout=0 >/dev/null 2>&1; }",
        "attempt=1",
        f"while ! out=$({cli} db check 2>&1); do",
        f'  if [ "$attempt" -ge {bounds.db_wait_attempts} ]; then',
        f'    say "database not reachable after {bounds.db_wait_attempts} attempts, giving up; last error:"',
        "    printf '%s\\n' \"$out\" | tail -n 5",
        "    exit 1",
        "  fi",
        f'  say "waiting for the database (attempt $attempt/{bounds.db_wait_attempts})"',
        "  attempt=$((attempt + 1))",
        f"  sleep {bounds.db_wait_interval_seconds}",
        "done",
        'say "database reachable"',
        "if pending; then",
        "  attempt=1",
        "  while :; do",
        f'    say "migrating with airflow db {subcommand} (attempt $attempt/{bounds.migrate_attempts})"',
        f"    if bounded {bounds.migrate_timeout_seconds} {migrate}; then",
        '      say "migrations applied"',
        "      break",
        "    fi",
        "    if ! pending; then",
        '      say "migrations applied by another pod"',
        "      break",
        "    fi",
        f'    if [ "$attempt" -ge {bounds.migrate_attempts} ]; then',
        f'      say "migration failed after {bounds.migrate_attempts} attempts"',
        "      exit 1",
        "    fi",
        "    attempt=$((attempt + 1))",
        f"    sleep {bounds.migrate_retry_interval_seconds}",
        "  done",
        "else",
        '  say "no migrations pending"',
        "fi",
    ]
    if bitnami:
        # The Bitnami wait container also waits for an admin user: do what the chart's setup Job does.
        lines += [
            "if ! is_airflow_admin_created; then",
            '  say "creating the admin user $AIRFLOW_USERNAME"',
            "  airflow_create_admin_user || is_airflow_admin_created ||",
            '    { say "admin user creation failed"; exit 1; }',
            "fi",
            'say "synchronizing permissions"',
            'airflow_execute sync-perm --include-dags || say "sync-perm failed (continuing)"',
        ]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _merged(base: list[JsonObject], extra: list[JsonObject], key: str | None) -> list[JsonObject]:
    """`base` followed by the entries of `extra` it lacks (by `key`, or by equality when None)."""
    if key is None:
        return base + [entry for entry in extra if entry not in base]
    seen = {entry.get(key) for entry in base}
    return base + [entry for entry in extra if entry.get(key) not in seen]


def build_step(
    profile: Profile,
    main: JsonObject,
    wait: JsonObject | None,
    config: EngineConfig,
) -> tuple[JsonObject, list[str]]:
    """The init container, and warnings about what it cannot do in this pod."""
    warnings: list[str] = []
    image = str(main.get("image") or "")
    version = airflow_version(image)
    if version is None:
        warnings.append(
            f"could not read the Airflow version from image {image!r}; "
            "the migrate step uses `airflow db migrate` (Airflow >= 2.7)"
        )
    subcommand = migrate_subcommand(version)
    script = migrate_script(profile, subcommand, config.step)

    step: JsonObject = {"name": STEP_CONTAINER_NAME}
    for field in _COPIED_FIELDS:
        if field in main:
            step[field] = main[field]
    if profile.step_style is StepStyle.ENTRYPOINT_ARGS:
        step["args"] = ["bash", "-c", script]
    elif profile.step_style is StepStyle.BITNAMI_LIBRARY:
        step["command"] = ["/bin/bash", "-ec", script]
    else:
        step["command"] = ["/bin/sh", "-c", script]

    wait = wait or {}
    own_env = [
        {"name": name, "value": value.format(admin_username=config.admin_username)}
        for name, value in profile.extra_env
    ]
    env = _merged(_merged(list(main.get("env", [])), list(wait.get("env", [])), "name"), own_env, "name")
    if env:
        step["env"] = env
    env_from = _merged(list(main.get("envFrom", [])), list(wait.get("envFrom", [])), None)
    if env_from:
        step["envFrom"] = env_from
    if "resources" in main:
        step["resources"] = main["resources"]
    security = main.get("securityContext", wait.get("securityContext"))
    if security is not None:
        step["securityContext"] = security
    mounts = _merged(list(main.get("volumeMounts", [])), list(wait.get("volumeMounts", [])), "mountPath")
    if mounts:
        step["volumeMounts"] = mounts
    step.update(_API_DEFAULTS)

    if profile.required_mount and not any(m.get("mountPath") == profile.required_mount for m in mounts):
        warnings.append(
            f"no volume is mounted at {profile.required_mount}: the migrate step cannot read the admin "
            "password, so creating the admin user will fail"
        )
    return step, warnings
