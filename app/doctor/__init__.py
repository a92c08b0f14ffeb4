"""`doctor`: read a cluster and say why an Airflow release is stuck, and what to run. Read-only.

gather    the one part that talks to the API server (and to the webhook's TLS port): a Snapshot
checks    pure: Snapshot + engine configuration + time -> findings, in the order a person would look
findings  the findings, the summary, the table and the JSON
"""
