"""The annotation keys that form the webhook's user-facing contract."""

INJECT = "airflow-migration-webhook/inject"  # "false" opts an object (or its pod template) out
MIGRATE = "airflow-migration-webhook/migrate"  # "true" | "false" overrides the migrating-component rule
STATUS = "airflow-migration-webhook/status"  # written by the engine: what was injected

HELM_HOOK = "helm.sh/hook"
ARGOCD_HOOK = "argocd.argoproj.io/hook"
ARGOCD_TRACKING_ID = "argocd.argoproj.io/tracking-id"
ARGOCD_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
INSTANCE_LABEL = "app.kubernetes.io/instance"
