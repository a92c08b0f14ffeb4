"""The `airflow-migration-webhook` command: argparse, dispatch, exit codes. Each command is a thin adapter:

mutate     apply the webhook's mutation to manifests offline (GitOps, KRM function)  -> app.offline
serve      run the HTTPS admission webhook                                            -> app.serve
reconcile  fix Airflow workloads that already exist in opted-in namespaces            -> app.reconcile
doctor     say why an Airflow release is stuck and what to run (read-only)           -> app.doctor
certs      write a development/manual-install CA and serving certificate              -> app.tls.issue
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from app.config import CONFIG_ENV, OPTIONS, ConfigError, Settings, load_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _settings(args: argparse.Namespace, stderr: TextIO) -> Settings | None:
    """The one loader, with this command's flags on top; None (after one line on stderr) when invalid."""
    flags = {key: getattr(args, _dest(key)) for key in OPTIONS if hasattr(args, _dest(key))}
    try:
        return load_settings(args.config, flags)
    except ConfigError as error:
        print(f"error: {error}", file=stderr)
        return None


def run_mutate(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    from app.manifests import UnreadableInput
    from app.offline import NoObjects, mutate_manifests

    settings = _settings(args, stderr)
    if settings is None:
        return EXIT_USAGE
    source = args.source or args.file
    try:
        text = stdin.read() if source in (None, "-") else Path(source).read_text(encoding="utf-8")
        run = mutate_manifests(text, settings, args.operation, args.quiet)
    except (ConfigError, UnreadableInput, NoObjects) as error:
        print(f"error: {error}", file=stderr)
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as error:
        print(f"error: cannot read {source}: {error}", file=stderr)
        return EXIT_USAGE
    stdout.write(run.output)
    stdout.flush()
    for line in run.report:
        print(line, file=stderr)
    print(run.summary, file=stderr)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.serve import run  # imported here: `mutate` needs no web stack

    settings = _settings(args, sys.stderr)
    if settings is None:
        return EXIT_USAGE
    if settings.serving_pair is None:
        print(
            f"error: serve needs --cert-file and --key-file ({OPTIONS['server.cert_file'].env} / "
            f"{OPTIONS['server.key_file'].env}) or self-managed TLS in the configuration",
            file=sys.stderr,
        )
        return EXIT_USAGE
    configure_logging(settings.server.log_level)
    return run(settings)


def _reconcile(args: argparse.Namespace) -> int:
    from app.kube import api_client
    from app.reconcile import NotOptedIn, Reconciler, Result, table

    settings = _settings(args, sys.stderr)
    if settings is None:
        return EXIT_USAGE
    try:
        reconciler = Reconciler(api_client(settings.kubeconfig), settings.engine, settings.namespace_label)
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
    return EXIT_ERROR if any(o.result is Result.FAILED for o in outcomes) else EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from app.clock import utc_now
    from app.config import parse_settings
    from app.doctor.checks import diagnose
    from app.doctor.context import Context
    from app.doctor.findings import render_table
    from app.doctor.gather import NoAccess, Reader, context_name, rbac_rules
    from app.kube import api_client

    settings = _settings(args, sys.stderr)
    if settings is None:
        return EXIT_USAGE
    try:
        api = api_client(settings.kubeconfig, args.context)
    except Exception as error:  # no kubeconfig, no such context, no in-cluster account: one plain line
        cause = str(error).splitlines()[0] if str(error) else repr(error)
        print(f"error: cannot load the cluster's credentials: {cause}", file=sys.stderr)
        return EXIT_USAGE
    try:
        reader = Reader(api, args.context or context_name(settings.kubeconfig))
        namespaces = None if args.all_opted_in else [args.namespace]
        snapshot = reader.snapshot(namespaces, settings.namespace_label.selector, args.webhook)
    except NoAccess as error:  # unreachable, refused: what happened, then the reads doctor needs
        print(f"error: {error}", file=sys.stderr)
        print(
            "doctor only reads; these rules grant what it reads (paste them under `rules:` of a ClusterRole: "
            "webhook configurations and namespaces are cluster-scoped):",
            file=sys.stderr,
        )
        print("\n".join(rbac_rules()), file=sys.stderr)
        return EXIT_USAGE
    engine, self_managed = settings.engine, None
    if snapshot.webhook_config_text is not None:
        try:  # the settings the webhook itself runs with: its engine and its TLS mode
            own = parse_settings(snapshot.webhook_config_text, "the webhook's ConfigMap")
        except ConfigError as error:
            snapshot.notes.append(f"the webhook's ConfigMap was not usable ({error}); engine defaults used")
        else:
            self_managed = own.self_managed_tls
            if args.config is None:
                engine = own.engine
                snapshot.notes.append("engine settings (migrating components) from the webhook's ConfigMap")
    context = Context(engine, settings.namespace_label, utc_now(), args.release, self_managed)
    report = diagnose(snapshot, context)
    if args.output == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        sys.stdout.write(render_table(report))
    return report.exit_code


def _certs(args: argparse.Namespace) -> int:
    from app.tls.issue import write_certificates

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


def _dest(key: str) -> str:
    return "option_" + key.replace(".", "__")


def _add_options(parser: argparse.ArgumentParser, *keys: str, aliases: dict[str, str] | None = None) -> None:
    """Flags from the OPTIONS table: the same flag, variable and config key everywhere."""
    for key in keys:
        option = OPTIONS[key]
        names = [option.flag, *([aliases[key]] if aliases and key in aliases else [])]
        parser.add_argument(
            *names,
            dest=_dest(key),
            metavar=option.flag.lstrip("-").upper().replace("-", "_"),
            type=option.parse,
            default=None,
            help=f"{option.help} (env {option.env}; config {key})",
        )
    parser.add_argument("--config", type=Path, default=None, help=f"configuration file (env {CONFIG_ENV})")


SERVER_OPTIONS = tuple(key for key in OPTIONS if key.startswith("server."))


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
    m.add_argument(
        "-q", "--quiet", action="store_true", help="report only changed objects, warnings and problems"
    )
    _add_options(m)

    s = sub.add_parser("serve", help="run the HTTPS admission webhook")
    _add_options(s, *SERVER_OPTIONS, "kubeconfig")

    r = sub.add_parser("reconcile", help="fix existing Airflow workloads of opted-in namespaces")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--namespace", help="one opted-in namespace")
    where.add_argument("--all-opted-in", action="store_true", help="every namespace with the opt-in label")
    r.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    _add_options(
        r,
        "kubeconfig",
        "namespace_label.key",
        "namespace_label.value",
        aliases={"namespace_label.key": "--label-key", "namespace_label.value": "--label-value"},
    )

    d = sub.add_parser("doctor", help="say why an Airflow release is stuck and what to run (read-only)")
    where = d.add_mutually_exclusive_group(required=True)
    where.add_argument("--namespace", help="the namespace of the Airflow release")
    where.add_argument("--all-opted-in", action="store_true", help="every namespace with the opt-in label")
    d.add_argument(
        "--release", help="only objects of this release (app.kubernetes.io/instance or release label)"
    )
    d.add_argument("-o", "--output", choices=("table", "json"), default="table")
    d.add_argument("--context", help="kubeconfig context (default: the current one)")
    d.add_argument(
        "--webhook", help="the MutatingWebhookConfiguration's name (default: found by its webhook)"
    )
    _add_options(d, "kubeconfig", "namespace_label.key", "namespace_label.value")

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
    if args.command == "doctor":
        return _doctor(args)
    return _certs(args)
