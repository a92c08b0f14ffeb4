#!/usr/bin/env bash
# Install what the Airflow tier needs: Debian's PostgreSQL server and three apache-airflow virtual
# environments (3.0.2; 2.10.5, >= 2.7; 2.6.3, < 2.7, which must get `db upgrade`), with the providers the
# images ship: the Bitnami Airflow 3 image has the FAB auth manager (`airflow users`, `sync-perm`) and Celery,
# the Airflow 2 image Celery (FAB is core there). Airflow's published constraints files live on a host this
# machine cannot reach, so the known-good pins are given here.
# Cached outside the work tree, keyed on the pins: later runs take seconds. Prints the cache folder.
set -euo pipefail
CACHE=${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-migration-webhook}/airflow
PYTHON=${PYTHON:-python3}
log() { echo "setup-airflow: [$(date -u +%H:%M:%S)] $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing postgresql"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
fi

# cryptography < 43 on the Airflow 2 lines, as their images and constraints ship it: newer releases made
# MultiFernet a Rust object that refuses Airflow 2's `_fernet.is_encrypted = True`, so `airflow db init`
# crashes creating the default connections after it migrated.
declare -A PINS=(
  [3.0.2]="apache-airflow==3.0.2 apache-airflow-providers-postgres asyncpg psycopg2-binary apache-airflow-providers-fab==2.4.4 apache-airflow-providers-celery==3.26.0"
  [2.10.5]="apache-airflow==2.10.5 apache-airflow-providers-postgres psycopg2-binary apache-airflow-providers-celery==3.13.1 cryptography<43"
  [2.6.3]="apache-airflow==2.6.3 psycopg2-binary celery>=5.2.3,<5.4 pendulum<3 flask-session<0.6 sqlalchemy<2 connexion<3 flask<2.3 werkzeug<2.3 flask-sqlalchemy<3 marshmallow<3.24 cryptography<43"
)
mkdir -p "$CACHE"
for version in 3.0.2 2.10.5 2.6.3; do
  venv=$CACHE/af-$version
  stamp=$venv/.pins-$(echo "${PINS[$version]}" | sha256sum | cut -c1-12)
  if [ -f "$stamp" ] && "$venv/bin/airflow" version >/dev/null 2>&1; then
    continue
  fi
  started=$SECONDS
  if [ -x "$venv/bin/pip" ]; then
    log "updating Airflow $version to the current pins"  # pip installs only the difference
  else
    log "installing Airflow $version (2-4 minutes on 2 cores)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
  fi
  # shellcheck disable=SC2086  # the pins are a word list
  if ! { "$venv/bin/pip" install -q --upgrade pip && "$venv/bin/pip" install -q ${PINS[$version]}; } \
      > "$CACHE/pip-$version.log" 2>&1; then
    tail -n 40 "$CACHE/pip-$version.log" >&2
    exit 1
  fi
  rm -f "$venv"/.pins-* && touch "$stamp"
  log "Airflow $version ready in $((SECONDS - started)) s"
done
echo "$CACHE"
