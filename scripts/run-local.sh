#!/usr/bin/env bash
# Set everything up and run the webhook on localhost: https://127.0.0.1:8443/mutate,
# health and metrics on http://127.0.0.1:8080. Certificates are written to certs/ (git-ignored);
# the CA is reused across runs so a registered caBundle stays valid. Extra flags go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "run-local: $*" >&2; }
HOST=${AMW_HOST:-127.0.0.1}
HEALTH_HOST=${AMW_HEALTH_HOST:-127.0.0.1}
PORT=${AMW_PORT:-8443}
HEALTH_PORT=${AMW_HEALTH_PORT:-8080}

if [ ! -x .venv/bin/airflow-migration-webhook ]; then
  say "creating .venv and installing the pinned dependencies (about a minute, once)"
fi
bash scripts/setup-venv.sh
say "development certificates in certs/ (the CA is reused between runs)"
.venv/bin/airflow-migration-webhook certs --out-dir certs --dns localhost --ip 127.0.0.1 > certs/ca-bundle.b64
say "caBundle (base64, for a MutatingWebhookConfiguration) in certs/ca-bundle.b64"
cat >&2 <<TRY

  Try it, from another terminal in $PWD:
    curl --cacert certs/ca.crt -H 'Content-Type: application/json' \\
      --data @tests/fixtures/admission/bitnami-24.1.0-scheduler-create.json https://localhost:$PORT/mutate
  (an AdmissionReview a real kube-apiserver sent; the answer carries the JSON patch, base64)
    curl http://$HEALTH_HOST:$HEALTH_PORT/readyz
    curl http://$HEALTH_HOST:$HEALTH_PORT/metrics
  Stop with Ctrl-C (SIGTERM/SIGINT: it drains, then exits 0).

TRY
exec .venv/bin/airflow-migration-webhook serve --cert-file certs/tls.crt --key-file certs/tls.key \
  --host "$HOST" --health-host "$HEALTH_HOST" --port "$PORT" --health-port "$HEALTH_PORT" "$@"
