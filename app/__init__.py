"""airflow-migration-webhook: make Airflow DB migrations run under Argo CD, at admission time."""

__version__ = "0.1.0"
