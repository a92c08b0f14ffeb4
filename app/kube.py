"""Kubernetes API plumbing shared by the front ends that talk to the API (self-managed TLS, reconcile,
doctor): the client, the pod's own namespace and identity, and a coordination.k8s.io Lease so that one
replica at a time writes."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from app.clock import Clock, utc_now

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def api_client(kubeconfig: Path | None, context: str | None = None) -> k8s.ApiClient:
    """From a kubeconfig (the argument, else $KUBECONFIG; `context`, else its current one), else the
    in-cluster service account."""
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    if path is not None:
        loaded: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(path), context=context)  # type: ignore[no-untyped-call]
        return loaded
    configuration = k8s.Configuration()
    k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s.ApiClient(configuration)


def own_namespace() -> str:
    """The namespace this pod runs in (its service account says); `default` outside a cluster."""
    path = SERVICE_ACCOUNT_NAMESPACE
    return path.read_text().strip() if path.exists() else "default"


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class Lease:
    """Leader election on one Lease: acquire when free or expired, renew while held; optimistic
    concurrency (resourceVersion) makes two replicas that race both see who won."""

    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int,
        now: Clock = utc_now,
    ) -> None:
        self.coordination = k8s.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration_seconds
        self.now = now

    def hold(self) -> bool:
        """Acquire or renew the Lease; False when another live replica holds it or we lost a race."""
        name, namespace, duration = self.name, self.namespace, self.duration
        now = self.now()
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = k8s.V1Lease(
                metadata=k8s.V1ObjectMeta(name=name),
                spec=k8s.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=duration,
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                self.coordination.create_namespaced_lease(namespace, body)
            except ApiException as create_error:
                if create_error.status == 409:
                    return False
                raise
            return True
        spec = lease.spec or k8s.V1LeaseSpec()
        lease.spec = spec
        renewed = spec.renew_time
        expired = (
            renewed is None or renewed + dt.timedelta(seconds=spec.lease_duration_seconds or duration) < now
        )
        if spec.holder_identity != self.identity:
            if not expired:
                return False
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = duration
        try:
            self.coordination.replace_namespaced_lease(name, namespace, lease)  # resourceVersion checked
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True
