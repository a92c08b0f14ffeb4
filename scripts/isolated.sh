#!/usr/bin/env bash
# Run a command in a network namespace made for this run: only `lo` (brought up), no other link, no route
# out. Everything else is shared (same mount namespace, files, users, processes), so the tests' own loopback
# servers (webhook processes, PostgreSQL, etcd, kube-apiserver, podman with --network host) work as before,
# and a dial to any other address (a Service's ClusterIP, the internet) fails at once with "Network is
# unreachable" instead of leaving the machine. scripts/test.sh runs pytest through it; whatever needs the
# network (pip, apt, npm, mmdebstrap, the image build) happens before, in test.sh's setup steps.
#   scripts/isolated.sh CMD [ARG...]        (needs root, or CAP_SYS_ADMIN for unshare --net)
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: scripts/isolated.sh CMD [ARG...]" >&2; exit 2; }
# shellcheck disable=SC2016  # $@ is expanded by the inner shell, inside the new namespace
exec unshare --net -- sh -euc 'ip link set lo up; exec "$@"' isolated "$@"
