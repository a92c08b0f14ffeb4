"""The `airflow-migration-webhook` command: thin front ends over the engine and the server.

mutate     apply the webhook's mutation to manifests offline (GitOps, KRM function)
serve      run the HTTPS admission webhook
reconcile  fix Airflow workloads that already exist in opted-in namespaces
certs      write a development/manual-install CA and serving certificate
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from app.admission.metrics import Metrics
from app.config import ConfigError, Settings, load_settings, problems_of
from app.engine import Action, Decision, EngineConfig, Reason, mutate
from app.logs import configure_logging
from app.manifests import ManifestStream, StreamKind, UnreadableInput, parse_stream, render_stream

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
ENV_PREFIX = "AMW_"


def _env(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name)


def object_ref(obj: dict[str, object]) -> str:
    """Kind/namespace/name, or Kind/name when the object names no namespace (as `helm template` often
    renders them)."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    namespace = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{obj.get('kind', '?')}/{namespace}{metadata.get('name') or '?'}"


def summary(decisions: list[Decision]) -> str:
    """`39 objects, 4 changed: 3 injected, 1 hook_job_marked, 35 unsupported_kind`."""
    counts = Counter(decision.reason.value for decision in decisions)
    changed = sum(decision.action is Action.INJECT for decision in decisions)
    noun = "object" if len(decisions) == 1 else "objects"
    by_reason = ", ".join(
        f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    )
    return f"{len(decisions)} {noun}, {changed} changed" + (f": {by_reason}" if by_reason else "")


def report_line(obj: dict[str, object], decision: Decision) -> str:
    extra = " ".join(
        f"{key}={value}"
        for key, value in (("profile", decision.profile), ("component", decision.component))
        if value
    )
    return f"{object_ref(obj)}: {decision.action.value} {decision.reason.value}" + (
        f" ({extra})" if extra else ""
    )


def _krm_result(obj: dict[str, object], decision: Decision) -> list[dict[str, object]]:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    ref = {
        key: value
        for key, value in (
            ("apiVersion", obj.get("apiVersion")),
            ("kind", obj.get("kind")),
            ("name", metadata.get("name")),
            ("namespace", metadata.get("namespace")),
        )
        if value
    }
    results: list[dict[str, object]] = [
        {
            "message": f"{decision.action.value} {decision.reason.value}: {decision.message}",
            "severity": "info",
            "resourceRef": ref,
        }
    ]
    results += [
        {"message": warning, "severity": "warning", "resourceRef": ref} for warning in decision.warnings
    ]
    return results


def _krm_engine_config(stream: ManifestStream, engine: EngineConfig) -> EngineConfig:
    """A KRM function's `functionConfig` overrides top-level engine settings (`migrating_components:
    scheduler,web` or `all`, `admin_username`): a ConfigMap's `data`, or the `spec` of a typed config.
    Anything else is refused, never ignored: a setting that silently does nothing is how deadlocks ship."""
    function_config = (
        (stream.envelope or {}).get("functionConfig") if stream.kind is StreamKind.RESOURCE_LIST else None
    )
    if not function_config:
        return engine
    if not isinstance(function_config, dict):
        raise ConfigError("functionConfig must be a Kubernetes object (a ConfigMap with data, or spec)")
    settings = function_config.get("data", function_config.get("spec"))
    if settings is None:
        stray = sorted(set(function_config) - {"apiVersion", "kind", "metadata"})
        if not stray:
            return engine
        raise ConfigError(
            f"functionConfig carries {', '.join(stray)}: put the settings under data (a ConfigMap) or spec"
        )
    if not isinstance(settings, dict):
        raise ConfigError("functionConfig data/spec must be a mapping")
    try:
        return EngineConfig.model_validate({**engine.model_dump(), **settings})
    except ValidationError as error:
        raise ConfigError(f"invalid functionConfig: {problems_of(error)}") from error


def run_mutate(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    try:
        settings = load_settings(args.config)
        source = args.source or args.file
        text = stdin.read() if source in (None, "-") else Path(source).read_text(encoding="utf-8")
        stream: ManifestStream = parse_stream(text)
        engine = _krm_engine_config(stream, settings.engine)
    except (ConfigError, UnreadableInput) as error:
        print(f"error: {error}", file=stderr)
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as error:
        print(f"error: cannot read {args.source or args.file}: {error}", file=stderr)
        return EXIT_USAGE

    if not stream.objects and stream.kind is StreamKind.DOCUMENTS:
        # a failed `helm template | mutate > airflow.yaml` must not commit an empty file
        print("error: no Kubernetes objects in the input", file=stderr)
        return EXIT_USAGE

    outputs: list[dict[str, object]] = []
    results: list[dict[str, object]] = []
    report: list[str] = []
    decisions: list[Decision] = []
    for obj in stream.objects:
        result = mutate(obj, args.operation, engine)
        outputs.append(result.object)
        decision = result.decision
        decisions.append(decision)
        problem = decision.reason is Reason.INVALID_OBJECT
        if result.changed or problem or decision.warnings or not args.quiet:
            report.append(report_line(obj, decision))
            report += [f"  warning: {warning}" for warning in decision.warnings]
        if stream.kind is StreamKind.RESOURCE_LIST:
            results += _krm_result(obj, decision)
    stdout.write(render_stream(stream, outputs, results))
    stdout.flush()
    for line in report:
        print(line, file=stderr)
    print(summary(decisions), file=stderr)
    return EXIT_OK


Background = tuple[Callable[[], object], float]


def _reconcile_loop(settings: Settings, metrics: Metrics) -> Background:
    """One replica at a time (a Lease) reconciles every opted-in namespace, at start-up and on a period."""
    from app.kube import Lease, api_client, default_identity
    from app.reconcile import Reconciler

    config = settings.reconcile
    api = api_client(config.kubeconfig)
    lease = Lease(
        api,
        config.lease_namespace or _own_namespace(),
        config.lease_name,
        default_identity(),
        config.lease_duration_seconds,
    )
    reconciler = Reconciler(api, settings.engine, config)

    def once() -> None:
        if not lease.hold():
            return
        for outcome in reconciler.run(reconciler.opted_in_namespaces(), dry_run=False):
            metrics.reconciled.labels(result=outcome.result, reason=outcome.reason).inc()

    return once, config.interval_seconds


def _own_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


def _self_managed_bootstrap(settings: Settings) -> tuple[Settings, Background] | int:
    """Wait until the serving pair is in cert_dir (ours or another replica's); point the server at it."""
    from app.kube import api_client, default_identity
    from app.selfmanaged import CertificateManager

    tls = settings.self_managed_tls
    assert tls is not None
    manager = CertificateManager(tls, api_client(tls.kubeconfig), default_identity())
    deadline = time.monotonic() + tls.startup_timeout_seconds
    while not manager.sync():
        if time.monotonic() > deadline:
            logging.getLogger("airflow_migration_webhook.selfmanaged").error(
                "no serving certificate after startup timeout", extra={"fields": {"secret": tls.secret_name}}
            )
            return EXIT_ERROR
        time.sleep(2)
    server = settings.server.model_copy(
        update={"cert_file": tls.cert_dir / "tls.crt", "key_file": tls.cert_dir / "tls.key"}
    )
    return settings.model_copy(update={"server": server}), (manager.sync, tls.sync_interval_seconds)


def _serve(args: argparse.Namespace) -> int:
    from app.admission.server import run_server  # imported lazily: `mutate` needs no web stack

    overrides = {
        "cert_file": args.cert_file,
        "key_file": args.key_file,
        "client_ca_file": args.client_ca_file,
        "port": args.port,
        "health_port": args.health_port,
        "host": args.host,
        "health_host": args.health_host,
        "max_body_bytes": args.max_body_bytes,
        "log_level": args.log_level,
    }
    try:
        settings: Settings = load_settings(args.config, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.server.log_level)
    metrics = Metrics()
    background: list[Background] = []
    if settings.self_managed_tls is not None:
        booted = _self_managed_bootstrap(settings)
        if isinstance(booted, int):
            return booted
        settings, tls_sync = booted
        background.append(tls_sync)
    if settings.server.cert_file is None or settings.server.key_file is None:
        print(
            "error: serve needs --cert-file and --key-file (or AMW_CERT_FILE / AMW_KEY_FILE)", file=sys.stderr
        )
        return EXIT_USAGE
    if settings.reconcile.enabled:
        background.append(_reconcile_loop(settings, metrics))
    return int(run_server(settings, background, metrics))


def _reconcile(args: argparse.Namespace) -> int:
    from app.kube import api_client
    from app.reconcile import NotOptedIn, Reconciler, table

    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    labels = {"namespace_label_key": args.label_key, "namespace_label_value": args.label_value}
    config = settings.reconcile.model_copy(update={k: v for k, v in labels.items() if v})
    try:
        reconciler = Reconciler(api_client(args.kubeconfig), settings.engine, config)
        if args.all_opted_in:
            namespaces = reconciler.opted_in_namespaces()
        else:
            reconciler.check_opted_in(args.namespace)
            namespaces = [args.namespace]
        outcomes = list(reconciler.run(namespaces, dry_run=args.dry_run))
    except NotOptedIn as error:
        print(f"error: {error}; label it first (or use --all-opted-in)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # API errors, unreachable cluster: one clear line, no trace
        first_line = str(error).splitlines()[0] if str(error) else repr(error)
        print(f"error: reconcile failed: {first_line}", file=sys.stderr)
        return EXIT_ERROR
    if args.output == "json":
        print(json.dumps([asdict(o) for o in outcomes], indent=2))
    else:
        sys.stdout.write(table(outcomes))
    return EXIT_ERROR if any(o.result == "failed" for o in outcomes) else EXIT_OK


def _certs(args: argparse.Namespace) -> int:
    from app.certs import write_certificates

    try:
        bundle = write_certificates(
            Path(args.out_dir),
            dns_names=args.dns,
            ip_addresses=args.ip,
            days=args.days,
            ca_days=args.ca_days,
            overwrite=args.force,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(bundle.ca_bundle_b64)
    if bundle.reused:
        print(f"reused {', '.join(str(p) for p in bundle.reused)} (--force makes a new CA)", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in bundle.written)}", file=sys.stderr)
    return EXIT_OK


def _int_env(name: str) -> int | None:
    value = _env(name)
    return int(value) if value not in (None, "") else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-migration-webhook",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser(
        "mutate", help="apply the mutation to manifests (stdin or -f) and write them to stdout"
    )
    m.add_argument("-f", "--file", default="-", help="YAML/JSON stream, List or ResourceList; - for stdin")
    m.add_argument("source", nargs="?", help="same as -f (`-` for stdin)")
    m.add_argument("--operation", choices=("CREATE", "UPDATE"), default="CREATE")
    m.add_argument("--config", type=Path, default=_env("CONFIG"), help="configuration file (env AMW_CONFIG)")
    m.add_argument(
        "-q", "--quiet", action="store_true", help="report only changed objects, warnings and problems"
    )

    s = sub.add_parser("serve", help="run the HTTPS admission webhook")
    s.add_argument("--cert-file", type=Path, default=_env("CERT_FILE"), help="env AMW_CERT_FILE")
    s.add_argument("--key-file", type=Path, default=_env("KEY_FILE"), help="env AMW_KEY_FILE")
    s.add_argument(
        "--client-ca-file",
        type=Path,
        default=_env("CLIENT_CA_FILE"),
        help="require client certificates signed by this CA (env AMW_CLIENT_CA_FILE)",
    )
    s.add_argument(
        "--port", type=int, default=_int_env("PORT"), help="HTTPS port, default 8443 (env AMW_PORT)"
    )
    s.add_argument(
        "--health-port",
        type=int,
        default=_int_env("HEALTH_PORT"),
        help="plain-HTTP /healthz /readyz /metrics port, default 8080 (env AMW_HEALTH_PORT)",
    )
    s.add_argument(
        "--host", default=_env("HOST"), help="HTTPS listen address, default 0.0.0.0 (env AMW_HOST)"
    )
    s.add_argument(
        "--health-host",
        default=_env("HEALTH_HOST"),
        help="health and metrics listen address, default 0.0.0.0 (env AMW_HEALTH_HOST)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=_int_env("MAX_BODY_BYTES"),
        help="request body cap, default 8 MiB (env AMW_MAX_BODY_BYTES)",
    )
    s.add_argument(
        "--log-level", default=_env("LOG_LEVEL"), help="debug|info|warning|error (env AMW_LOG_LEVEL)"
    )
    s.add_argument("--config", type=Path, default=_env("CONFIG"), help="configuration file (env AMW_CONFIG)")

    r = sub.add_parser("reconcile", help="fix existing Airflow workloads of opted-in namespaces")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--namespace", help="one opted-in namespace")
    where.add_argument("--all-opted-in", action="store_true", help="every namespace with the opt-in label")
    r.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    r.add_argument("--kubeconfig", type=Path, default=None, help="default: $KUBECONFIG, else in-cluster")
    r.add_argument("--label-key", help="opt-in label key (default airflow-migration-webhook/inject)")
    r.add_argument("--label-value", help="opt-in label value (default enabled)")
    r.add_argument("--config", type=Path, default=_env("CONFIG"), help="configuration file (env AMW_CONFIG)")

    c = sub.add_parser("certs", help="write a CA and a serving certificate; print the caBundle (base64)")
    c.add_argument("--out-dir", default="certs", help="directory for ca.crt, ca.key, tls.crt, tls.key")
    c.add_argument("--dns", action="append", default=[], help="DNS name for the serving certificate (repeat)")
    c.add_argument(
        "--ip", action="append", default=[], help="IP address for the serving certificate (repeat)"
    )
    c.add_argument("--days", type=int, default=365, help="serving certificate validity")
    c.add_argument("--ca-days", type=int, default=3650, help="CA validity")
    c.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "mutate":
        return run_mutate(args, sys.stdin, sys.stdout, sys.stderr)
    if args.command == "serve":
        return _serve(args)
    if args.command == "reconcile":
        return _reconcile(args)
    return _certs(args)
