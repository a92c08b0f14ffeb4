"""The real webhook server for the benchmark: `serve` with its default settings (logging, metrics, engine),
bound to loopback."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.admission.server import run_async, serve
from app.config import load_settings
from app.logs import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--health-port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings(
        None,
        {
            "cert_file": args.cert_dir / "tls.crt",
            "key_file": args.cert_dir / "tls.key",
            "host": "127.0.0.1",
            "port": args.port,
            "health_host": "127.0.0.1",
            "health_port": args.health_port,
        },
    )
    configure_logging(settings.server.log_level)
    run_async(serve(settings))


if __name__ == "__main__":
    main()
