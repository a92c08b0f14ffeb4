#!/usr/bin/env bash
# Set everything up and run the webhook on localhost: https://127.0.0.1:8443/mutate,
# health and metrics on http://127.0.0.1:8080. Certificates are written to certs/ (git-ignored);
# the CA is reused across runs so a registered caBundle stays valid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
.venv/bin/airflow-migration-webhook certs --out-dir certs --dns localhost --ip 127.0.0.1 > certs/ca-bundle.b64
echo "caBundle (base64) written to certs/ca-bundle.b64" >&2
exec .venv/bin/airflow-migration-webhook serve --cert-file certs/tls.crt --key-file certs/tls.key \
  --host "${AMW_HOST:-127.0.0.1}" "$@"
