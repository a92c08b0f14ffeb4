"""`doctor`: read a cluster and say why an Airflow release is stuck, and what to run. Read-only.

gather    the one part that talks to the API server (and to the webhook's TLS port): a Snapshot
context   what the checks know beside it (engine settings, opt-in label, time, the webhook's TLS settings)
webhook   pure: the webhook's checks, and which command fixes them in its TLS mode
checks    pure: Snapshot + Context -> findings, in the order a person would look
findings  the findings (code, evidence, a fix that changes things, a command to look at), the summary, the
          table and the JSON
"""
