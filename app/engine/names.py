"""The names that form the webhook's user-facing contract: every front end, the chart's defaults and the
README take them from here (tests compare the chart with them).

The opt-in is one switch, `airflow-migration-webhook/inject`, at two scopes: as a label on a namespace,
`enabled` opts the namespace in (the webhook configuration's namespaceSelector and `reconcile` select on
it); as an annotation on an object or pod template, `"false"` opts that object out.
"""

INJECT = "airflow-migration-webhook/inject"  # annotation: "false" opts an object (or its pod template) out
NAMESPACE_LABEL = INJECT  # label: the default opt-in key of a namespace (configurable)
NAMESPACE_LABEL_VALUE = "enabled"  # ... and its default value
MIGRATE = "airflow-migration-webhook/migrate"  # "true" | "false" overrides the migrating-component rule
STATUS = "airflow-migration-webhook/status"  # written by the engine: what was injected
ROTATE = "airflow-migration-webhook/rotate"  # on the self-managed TLS Secret: "true" forces a new CA
STEP_CONTAINER_NAME = "airflow-db-migrate"  # the init container the webhook adds (`kubectl logs -c`)
WEBHOOK_NAME = "migrate.airflow-migration-webhook.io"  # the webhook's name in its configuration (chart)

HELM_HOOK = "helm.sh/hook"
ARGOCD_HOOK = "argocd.argoproj.io/hook"
ARGOCD_TRACKING_ID = "argocd.argoproj.io/tracking-id"
ARGOCD_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
INSTANCE_LABEL = "app.kubernetes.io/instance"
