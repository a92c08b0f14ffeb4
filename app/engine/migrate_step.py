"""Build the `airflow-db-migrate` init container from the pod's own Airflow container.

The step is rebuilt from the current pod spec on every pass, so an image bump moves it to the new image
and a second pass over its own output yields the same container.
"""

from __future__ import annotations

import functools

from app.engine.config import EngineConfig, MigrateStepConfig
from app.engine.names import STEP_CONTAINER_NAME
from app.engine.objects import JsonObject, command_line
from app.engine.profiles import ImageLine, Profile, StepStyle, matches
from app.engine.versions import airflow_version, migrate_subcommand

# Copied verbatim from the Airflow container when present, in this order (readable goldens).
_COPIED_FIELDS = ("image", "imagePullPolicy", "workingDir")
# Set explicitly to the API server's defaults so a stored object equals what the engine builds.
_API_DEFAULTS = {"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
# Lines of a failed command's output printed, prefixed, so `kubectl logs` says why.
_SHOWN_LINES = 20

# The migration command logs at INFO whatever the release's logging level, so that Alembic's lines naming
# each revision it applies (`Running upgrade A -> B`, `Running stamp_revision -> B` on a fresh database)
# tell this pod's migration from a racing pod's.
_MIGRATE_LOGGED = "env AIRFLOW__LOGGING__LOGGING_LEVEL=INFO airflow db"
_APPLIED = "Running (upgrade|stamp_revision)"
_APPLIED_ELSEWHERE = "no migrations pending: another pod applied them"

# What `airflow db check-migrations` runs, without the CLI around it: building the CLI's parser costs about as
# much as the check itself (and on Bitnami's images, whose byte-code cache is an emptyDir, every module a pod
# start imports is compiled first). Exit 0: the check passed; 10: it failed (pending migrations, or no
# database), where the CLI exits 1. Anything else (an interpreter that is not the image's Airflow, an Airflow
# without the command, Kerberos, whose environment the CLI sets up first): the CLI decides. So the probe can
# make the step faster, never change what it concludes.
_PROBE = (
    "import sys",
    "from argparse import Namespace",
    "from airflow.cli.commands.db_command import check_migrations",
    "from airflow.configuration import conf",
    'if conf.get("core", "security") == "kerberos":',
    "    sys.exit(12)",
    "try:",
    "    check_migrations(Namespace(migration_wait_timeout=0))",
    "except Exception as error:",
    "    print(error)",
    "    sys.exit(10)",
)
# ... then, in the same interpreter, one query for the admin user, where `airflow users list` starts FAB's
# whole web application to print the same table (FAB's `ab_user`, in Airflow's schema). Exit 11: the check
# passed but the user was not found (or the query failed): `airflow users list` decides.
_PROBE_ADMIN = (
    "try:",
    "    from sqlalchemy import column, select, table",
    "    from airflow import settings",
    "    from airflow.models.base import metadata",
    '    users = table("ab_user", column("username"), schema=metadata.schema)',
    "    with settings.engine.connect() as connection:",
    "        query = select(users.c.username).where(users.c.username == sys.argv[1])",
    "        found = connection.execute(query).first() is not None",
    "except Exception:",
    "    found = False",
    "sys.exit(0 if found else 11)",
)

# POSIX shell (dash, busybox sh and bash alike). `out` holds the last command's output for `show`.
_HELPERS = (
    'say() { echo "airflow-db-migrate: $*"; }',
    f"show() {{ printf '%s\\n' \"$1\" | tail -n {_SHOWN_LINES} | sed 's/^/airflow-db-migrate: | /'; }}",
    'bounded() { if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }',
    # the interpreter of the image's `airflow` (its `#!/.../python3` line), else the first python3 on PATH
    "py=$(sed -n '1s|^#!\\(/[^ ]*/python[0-9.]*\\)$|\\1|p' \"$(command -v airflow)\" 2>/dev/null || true)",
    "py=${py:-python3}",
)


def _up_to_date(admin_seen: bool) -> tuple[str, ...]:
    """`probe` and `up_to_date`: succeeds only when the DB is reachable and no migration is pending, in one
    interpreter start when the probe can tell. `admin_seen`: the probe also looks the admin user up
    (`admin_seen=1`: it exists)."""
    program = _PROBE + _PROBE_ADMIN if admin_seen else _PROBE
    user = ' "$AIRFLOW_USERNAME"' if admin_seen else ""
    return (
        "probe() {",
        f"  \"$py\" -{user} <<'PROBE'",
        *program,
        "PROBE",
        "}",
        "up_to_date() {",
        "  verdict=0",
        "  out=$(probe 2>&1) || verdict=$?",
        '  case "$verdict" in',
        *(["    0) admin_seen=1 ;;", "    11) ;;"] if admin_seen else ["    0) ;;"]),
        "    10) return 1 ;;",
        "    *) out=$(airflow db check-migrations --migration-wait-timeout=0 2>&1) ;;",
        "  esac",
        "}",
    )


def _admin_user(mark_created: bool, seen: bool) -> tuple[str, ...]:
    """`admin_exists` and `ensure_admin`: the same command as the image library's
    `airflow_create_admin_user`, with its output kept. A racing pod that created the user first (a unique
    violation here) counts as success when the re-check finds it. `mark_created`: set `created=1` for a
    `sync-perm` that follows a user this pod created. `seen`: the probe may already have found the user."""
    known = '[ "${admin_seen:-0}" = 1 ] || ' if seen else ""
    return (
        "admin_exists() {",
        "  out=$(airflow users list --output plain 2>&1) &&",
        '    printf \'%s\\n\' "$out" | grep -qwF -- "$AIRFLOW_USERNAME"',
        "}",
        "ensure_admin() {",
        f"  if {known}admin_exists; then return 0; fi",
        '  say "creating the admin user $AIRFLOW_USERNAME"',
        '  if out=$(airflow users create -r Admin -u "$AIRFLOW_USERNAME" -e "$AIRFLOW_EMAIL" \\',
        '      -p "$AIRFLOW_PASSWORD" -f "$AIRFLOW_FIRSTNAME" -l "$AIRFLOW_LASTNAME" 2>&1); then',
        '    say "admin user created"',
        "  elif admin_exists; then",
        '    say "admin user created by another pod"',
        "  else",
        '    say "admin user creation failed; last output:"',
        '    show "$out"',
        "    exit 1",
        "  fi",
        *(["  created=1"] if mark_created else []),
        "}",
    )


@functools.lru_cache(maxsize=64)  # pure: the same inputs always give the same script
def migrate_script(
    preamble: tuple[str, ...], subcommand: str, line: ImageLine, admin_always: bool, bounds: MigrateStepConfig
) -> str:
    """Shell: one CLI start when nothing is pending; else wait for the DB (bounded), migrate with retries,
    then what the chart's setup Job does after a migration on this image line."""
    waits, tries = bounds.db_wait_attempts, bounds.migrate_attempts
    lines = [*preamble, *_HELPERS, *_up_to_date(admin_seen=admin_always)]
    admin = admin_always or line.admin_user_after_migration
    if admin:
        lines += _admin_user(mark_created=line.sync_perm_after_migration, seen=admin_always)
    # the after-migration tail reads `migrated`; without a tail it is not set at all (shellcheck-clean)
    tracked = (admin and not admin_always) or line.sync_perm_after_migration
    lines += [
        *(["migrated=0"] if tracked else []),
        "if up_to_date; then",
        '  say "no migrations pending"',
        "else",
        "  attempt=1",
        "  while ! out=$(airflow db check 2>&1); do",
        f'    if [ "$attempt" -ge {waits} ]; then',
        f'      say "database not reachable after {waits} attempts, giving up; last error:"',
        '      show "$out"',
        "      exit 1",
        "    fi",
        f'    say "waiting for the database (attempt $attempt/{waits})"',
        "    attempt=$((attempt + 1))",
        f"    sleep {bounds.db_wait_interval_seconds}",
        "  done",
        '  say "database reachable"',
        "  if up_to_date; then",
        '    say "no migrations pending"',
        "  else",
        *(["    migrated=1"] if tracked else []),
        "    attempt=1",
        "    while :; do",
        f'      say "migrating with airflow db {subcommand} (attempt $attempt/{tries})"',
        f"      if migration=$(bounded {bounds.migrate_timeout_seconds} {_MIGRATE_LOGGED} {subcommand} 2>&1);"
        " then",
        # Alembic names every revision it applies: none means a racing pod migrated first (this one
        # waited on Airflow's migration lock, then found nothing to do)
        f"        if printf '%s\\n' \"$migration\" | grep -qE '{_APPLIED}'; then",
        '          say "migrations applied"',
        "        else",
        f'          say "{_APPLIED_ELSEWHERE}"',
        "        fi",
        "        break",
        "      else",
        "        status=$?",
        "      fi",
        "      if up_to_date; then",
        f'        say "{_APPLIED_ELSEWHERE}"',
        "        break",
        "      fi",
        f'      if [ "$attempt" -ge {tries} ]; then',
        f'        say "migration failed after {tries} attempts (exit $status); last output:"',
        '        show "$migration"',
        "        exit 1",
        "      fi",
        # every failed attempt says why, not only the last: a transient cause shows where it happened
        '      say "attempt $attempt failed (exit $status), retrying; last output:"',
        '      show "$migration"',
        "      attempt=$((attempt + 1))",
        f"      sleep {bounds.migrate_retry_interval_seconds}",
        "    done",
        "  fi",
        "fi",
    ]
    if admin:
        lines += (
            ["ensure_admin"] if admin_always else ['if [ "$migrated" = 1 ]; then', "  ensure_admin", "fi"]
        )
    if line.sync_perm_after_migration:
        lines += [
            'if [ "$migrated" = 1 ] || [ "${created:-0}" = 1 ]; then',
            '  say "synchronizing permissions"',
            "  if ! out=$(airflow sync-perm --include-dags 2>&1); then",
            '    say "sync-perm failed (continuing: the admin user exists); last output:"',
            '    show "$out"',
            "  fi",
            "fi",
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
    recipe = profile.step
    line = recipe.line_for(version[0] if version else None)
    subcommand = line.migrate_subcommand or migrate_subcommand(version)
    admin_always = bool(
        wait is not None and recipe.admin_user_wait and matches(recipe.admin_user_wait, command_line(wait))
    )
    script = migrate_script(recipe.preamble, subcommand, line, admin_always, config.step)

    step: JsonObject = {"name": STEP_CONTAINER_NAME}
    for field in _COPIED_FIELDS:
        if field in main:
            step[field] = main[field]
    invocation = "args" if recipe.style is StepStyle.ENTRYPOINT_ARGS else "command"
    step[invocation] = [*recipe.shell, script]

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
