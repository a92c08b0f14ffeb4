"""TLS for the webhook, in three parts:

issue        make a CA and certificates (the `certs` command, self-managed mode, tests)
source       the certificate the listener serves, re-read when its files change
selfmanaged  keep the CA and serving pair in a Secret and the CA in the webhook configuration
"""
