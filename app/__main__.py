"""`python -m app` is the same as the `airflow-migration-webhook` console script."""

from app.cli import main

raise SystemExit(main())
